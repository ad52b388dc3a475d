"""One exit-status policy for every command (docs/reliability.md, "Exit status"):

    0    done: the run completed or diverged (a divergence is a result), the output written
    1    a run of a sweep or reproduction failed (the others were done)
    2    bad input: one line on stderr
    130  interrupted (Ctrl-C, SIGTERM): training commands checkpoint first
    141  stdout closed by its reader (`| head -1`), nothing printed (test_cli_faults.py)

Each command is driven in-process with its library call replaced by one that returns or
raises each case, so the table checks `main`'s mapping cheaply; the bad-input cases run the
real command on a folder that does not exist."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest

import sgdwalk.experiment
import sgdwalk.plots.live
import sgdwalk.store
import sgdwalk.studies
from sgdwalk.cli import main
from sgdwalk.errors import StoreError
from sgdwalk.experiment import RunResult

REPRODUCE = importlib.import_module("sgdwalk.studies.reproduce")  # the package exports a
# function of the same name


def _run(args) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc
    return fail


def _returns(value):
    return lambda *args, **kwargs: value


def _sweep(ok: bool, interrupted: bool):
    return SimpleNamespace(ok=ok, interrupted=interrupted, summary=lambda: "summary",
                           root=Path("root"), claims=None)


# command -> (args, [(module, attribute)] its library call(s))
COMMANDS = {
    "train": (["train", "default"], [(sgdwalk.experiment, "train")]),
    "resume": (["resume", "RUN"], [(sgdwalk.experiment, "resume")]),
    "sweep": (["sweep", "lr-batch"], [(sgdwalk.studies, "run_sweep")]),
    "reproduce": (["reproduce", "--studies", "lr-batch"],
                  [(REPRODUCE, "reproduce")]),
    "claims": (["claims", "DIR"], [(sgdwalk.store, "load")]),
    "report": (["report", "DIR"], [(sgdwalk.store, "load")]),
    "watch": (["watch", "DIR"], [(sgdwalk.plots.live, "open_live_view")]),
    "export": (["export", "RUN"], [(sgdwalk.store, "export_run")]),
}


def _results(status: str):
    return RunResult(Path("run"), status, 3, {})


# what each command's library call gives in each case -> the exit status
CASES = {
    "train": [(_returns(_results("completed")), 0), (_returns(_results("diverged")), 0),
              (_returns(_results("stopped")), 130)],
    "resume": [(_returns(_results("completed")), 0), (_returns(_results("diverged")), 0),
               (_returns(_results("stopped")), 130)],
    "sweep": [(_returns(_sweep(True, False)), 0), (_returns(_sweep(False, False)), 1),
              (_returns(_sweep(False, True)), 130)],
    "reproduce": [(_returns(_sweep(True, False)), 0), (_returns(_sweep(False, False)), 1),
                  (_returns(_sweep(False, True)), 130)],
    "export": [(_returns(Path("out.csv")), 0)],
}
ALL = {"bad input": (_raise(StoreError("x: expected y, got z")), 2),
       "Ctrl-C": (_raise(KeyboardInterrupt()), 130)}


def _cases():
    for command in COMMANDS:
        for i, (call, code) in enumerate(CASES.get(command, [])):
            yield pytest.param(command, call, code, id=f"{command}-result{i}-exit{code}")
        for name, (call, code) in ALL.items():
            yield pytest.param(command, call, code, id=f"{command}-{name}-exit{code}")


@pytest.mark.parametrize("command, call, code", list(_cases()))
def test_each_command_exits_with_the_policy_status(monkeypatch, request, command, call, code):
    args, targets = COMMANDS[command]
    for module, attribute in targets:
        monkeypatch.setattr(module, attribute, call)
    if command in ("sweep", "reproduce"):
        monkeypatch.setattr(sgdwalk.studies, "load_study", _returns(None))
    got, err = _run(args)
    assert got == code, err
    assert "Traceback" not in err
    if code == 2:
        assert err == "sgdwalk: error: x: expected y, got z\n"
    if "Ctrl-C" in request.node.callspec.id:
        assert err == "sgdwalk: interrupted\n"


def test_watch_ended_by_ctrl_c_exits_130():
    """watch leaves with os._exit(130) (its renderer may be inside native code), so it runs
    in a child process here, its server replaced by one that is interrupted at once."""
    code = ("import sys\n"
            "import sgdwalk.plots.live as live\n"
            "class Server:\n"
            "    server_address = ('127.0.0.1', 8765)\n"
            "    url = 'http://127.0.0.1:8765/'\n"
            "    def serve_until_interrupted(self, ready=None):\n"
            "        ready(self)\n"
            "        raise KeyboardInterrupt\n"
            "live.open_live_view = lambda *a, **k: Server()\n"
            "from sgdwalk.cli import main\n"
            "sys.exit(main(['watch', 'DIR']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout == "watching DIR at http://127.0.0.1:8765/\n"
    assert proc.stderr == "sgdwalk: interrupted\n"


@pytest.mark.parametrize("args", [
    ["train", "no-such-preset"], ["resume", "{missing}"], ["sweep", "no-such-study"],
    ["reproduce", "--studies", "no-such-study"], ["claims", "{missing}"],
    ["report", "{missing}"], ["watch", "{missing}"], ["export", "{missing}"],
    ["config", "show", "no-such-preset"], ["presets", "--nope"], ["nope"]])
def test_bad_input_to_each_command_is_one_line_and_exit_2(tmp_path, args, capsys):
    args = [a.replace("{missing}", str(tmp_path / "missing")) for a in args]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors exit from inside parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sgdwalk: error: "), err
