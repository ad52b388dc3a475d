"""The live view in process: the page follows the store as rows arrive, reads it without
writing, stays self-contained, survives a report that cannot be drawn yet, and its server
answers / and /version on 127.0.0.1 (a busy port is replaced by a free one). The real
training run in a browser is tests/plots/test_watch.py."""

import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from sgdwalk.analysis import Tables
from sgdwalk.analysis.synthetic import sweep_tables, write_runs
from sgdwalk.cli import main
from sgdwalk.plots import live as live_module
from sgdwalk.plots.live import LiveReport, check_watchable, open_live_view, read_state
from sgdwalk.store import RunStore, write_manifest

RUN = "sgd-lr0.1-b32-s0"


@pytest.fixture(scope="module")
def full():
    """One synthetic SGD run of 2 epochs x 16 steps, with line curves."""
    t = sweep_tables(epochs=2, lrs=(0.1,), batch_sizes=(32,), seeds=1)
    return t.subset([RUN])


def write_prefix(full, root, last_step):
    """The run of `full` written up to `last_step` (inclusive) under `root`; its folder."""
    steps = full.steps[full.steps["step"] <= last_step].assign(status="running")
    vectors = {n: v[v["step"] <= last_step] for n, v in
               ((n, full.vectors(n)) for n in full.loaded_vectors())}
    part = Tables.from_frames(steps, vectors=vectors, metas={RUN: full.meta(RUN)})
    (run_dir,) = write_runs(part, root)
    return run_dir


def append(full, run_dir, first, last):
    """Log the rows of steps first..last of `full` into the run, as a writer would."""
    rows = full.steps[(full.steps["step"] >= first) & (full.steps["step"] <= last)]
    metrics = [c for c in rows.columns if "." not in c and c not in
               ("run_id", "run_dir", "status", "study", "variant", "scale", "step",
                "steps_per_epoch", "epochs_done")]
    with RunStore.open(run_dir, write=True) as store:
        for step, values in zip(rows["step"], rows[metrics].to_dict("records")):
            store.log(int(step), {k: v for k, v in values.items() if v == v})


def test_the_page_follows_the_store_as_rows_arrive(full, tmp_path):
    run_dir = write_prefix(full, tmp_path, last_step=-1)
    live = LiveReport(run_dir, interval=0.5)
    assert live.refresh()
    assert live.version() == {"version": 1, "step": -1, "rows": 0, "runs": 1,
                              "status": {"running": 1}}
    assert b"waiting for the first rows" in live.page()
    assert not live.refresh() and live.version()["version"] == 1  # nothing new: not redrawn

    append(full, run_dir, 0, 9)
    assert live.refresh()
    v = live.version()
    assert (v["version"], v["step"], v["rows"]) == (2, 9, 10)
    page = live.page().decode()
    assert "<table id='claims'>" in page and "waiting" not in page
    assert "<span id='live-step'>9</span>" in page and "data-version='2'" in page

    append(full, run_dir, 10, 20)
    assert live.refresh() and live.version()["step"] == 20
    assert "<span id='live-step'>20</span>" in live.page().decode()


@pytest.fixture(scope="module")
def drawn(full, tmp_path_factory):
    """A run drawn once: (LiveReport, file hashes before, file hashes after the drawing)."""
    run_dir = write_prefix(full, tmp_path_factory.mktemp("drawn"), last_step=31)

    def snapshot():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(run_dir.rglob("*")) if p.is_file()}

    before = snapshot()
    live = LiveReport(run_dir)
    assert live.refresh() and live.version()["rows"] == 32
    return live, before, snapshot()


def test_watching_reads_the_store_and_writes_nothing(drawn):
    live, before, after = drawn
    # every file is byte-identical and no report.html appears; the only new files are the
    # WAL index SQLite makes for any reader of a WAL database (an empty -wal: no writes)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) <= {"metrics.sqlite-shm", "metrics.sqlite-wal"}
    wal = live.root / "metrics.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_report_that_cannot_be_drawn_yet_gives_the_waiting_page(full, tmp_path,
                                                                   monkeypatch):
    run_dir = write_prefix(full, tmp_path, last_step=5)

    def fails(root):
        raise KeyError("epochs_done")

    monkeypatch.setattr(live_module, "report_html", fails)
    live = LiveReport(run_dir)
    assert live.refresh()
    page = live.page().decode()
    assert "6 rows stored; the report cannot be drawn yet" in page
    assert "KeyError: &#x27;epochs_done&#x27;" in page
    assert live.version()["step"] == 5


def test_a_folder_that_goes_away_is_said_once(full, tmp_path):
    run_dir = write_prefix(full, tmp_path, last_step=-1)
    live = LiveReport(run_dir)
    assert live.refresh() and live.version()["runs"] == 1
    shutil.rmtree(run_dir)
    assert live.refresh()
    assert live.version() == {"version": 2, "step": -1, "rows": 0, "runs": 0, "status": {}}
    assert b"expected an existing folder" in live.page()
    assert not live.refresh() and live.version()["version"] == 2  # not redrawn every poll


def test_a_slow_drawing_spaces_out_the_next_poll(full, tmp_path, monkeypatch):
    run_dir = write_prefix(full, tmp_path, last_step=3)

    def slow(root):
        time.sleep(0.5)
        return "<!DOCTYPE html><html><head></head><body><p>drawn</p></body></html>"

    monkeypatch.setattr(live_module, "report_html", slow)
    live = LiveReport(run_dir, interval=0.1)
    assert live.pause == 0.1
    assert live.refresh() and b"<p>drawn</p>" in live.page()
    assert live.pause >= 0.5  # waits as long as the drawing took, not the interval


def test_the_live_page_is_self_contained_with_one_inline_script(drawn):
    live = drawn[0]
    page = live.page().decode().lower()
    assert page.count("<script") == 1 and "<script>" in page  # inline, no src=
    assert page.index("<script>") < page.index("</head>")  # swapping <body> keeps it
    assert set(re.findall(r"fetch\('([^']*)'", page)) == {"/version", "/"}  # same origin
    for external in ("<link", "@import", "url(", "src='http", 'src="http', "href='http",
                     'href="http', "<iframe"):
        assert external not in page, external


def test_a_sweep_folder_is_watched_before_and_while_its_runs_start(tmp_path):
    write_manifest(tmp_path, {"study": "lr-batch", "runs": []})
    assert check_watchable(tmp_path) == tmp_path  # no run yet: accepted, it is a sweep
    live = LiveReport(tmp_path)
    assert live.refresh() and live.version()["runs"] == 0
    assert b"waiting for the first rows" in live.page()
    t = sweep_tables(epochs=2, lrs=(0.1, 0.2), batch_sizes=(32,), seeds=1)
    sgd = t.subset([r for r in t.runs.index if r.startswith("sgd-lr0.")])
    write_runs(Tables.from_frames(sgd.steps[sgd.steps["step"] < 0]), tmp_path)
    assert live.refresh()
    assert live.version() == {"version": 2, "step": -1, "rows": 0, "runs": 2,
                              "status": {"completed": 2}}


def test_the_live_view_never_imports_torch(full, tmp_path):
    run_dir = write_prefix(full, tmp_path, last_step=3)
    code = ("import sys, time\n"
            "from sgdwalk.plots.live import open_live_view\n"
            f"server = open_live_view({str(run_dir)!r}, port=0)\n"
            "for _ in range(3000):  # the renderer thread draws it\n"
            "    if server.live.version()['version'] >= 1:\n"
            "        break\n"
            "    time.sleep(0.1)\n"
            "assert server.live.version()['step'] == 3\n"
            "assert b\"<table id='claims'>\" in server.live.page()\n"
            "server.close()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers["Content-Type"], r.read()


def test_the_server_answers_the_page_and_its_version(full, tmp_path):
    run_dir = write_prefix(full, tmp_path, last_step=20)
    server = open_live_view(run_dir, port=0, interval=0.2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server.url)
        assert server.server_address[0] == "127.0.0.1" and server.server_address[1] > 0
        for _ in range(600):  # the first drawing takes seconds on a busy machine
            status, kind, body = get(server.url + "version")
            if json.loads(body)["version"] >= 1:
                break
            threading.Event().wait(0.1)
        assert status == 200 and kind == "application/json"
        assert json.loads(body) == {"version": 1, "step": 20, "rows": 21, "runs": 1,
                                    "status": {"running": 1}}
        status, kind, page = get(server.url)
        assert status == 200 and kind.startswith("text/html")
        assert b"<span id='live-step'>20</span>" in page
        with pytest.raises(urllib.error.HTTPError) as missing:
            get(server.url + "report.html")
        assert missing.value.code == 404
    finally:
        server.shutdown()
        server.close()
        thread.join(10)
    assert read_state(run_dir).step == 20


def test_a_busy_port_is_replaced_by_a_free_one(full, tmp_path):
    run_dir = write_prefix(full, tmp_path, last_step=-1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        server = open_live_view(run_dir, port=busy)
        try:
            assert server.server_address[1] not in (0, busy)
        finally:
            server.close()


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "watch --port: expected an integer in 0..65535, got 70000"),
    (["--interval", "0"], "watch --interval: expected seconds in 0.1..3600, got 0.0"),
    (["--interval", "nan"], "watch --interval: expected seconds in 0.1..3600, got nan"),
])
def test_bad_watch_options_fail_with_one_line(full, tmp_path, capsys, args, message):
    run_dir = write_prefix(full, tmp_path, last_step=-1)
    assert main(["watch", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sgdwalk: error: {message}"]


def test_watch_on_a_folder_that_is_not_a_run_or_sweep_fails_with_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a run")
    for target, got in ((tmp_path, "got a folder without runs"),
                        (tmp_path / "missing", "got no such folder"),
                        (tmp_path / "notes.txt", "got a file")):
        assert main(["watch", str(target), "--port", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "expected a run or a sweep folder" in err[0], err
        assert err[0].endswith(got)


def sigint_blocked(thread) -> bool:
    """Whether SIGINT (2) is in the thread's blocked mask, read from /proc."""
    status = open(f"/proc/self/task/{thread.native_id}/status").read()
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")]
    return bool(int(mask, 16) & (1 << (2 - 1)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_server_thread_can_take_sigint(full, tmp_path):
    """The renderer and the HTTP threads block SIGINT, so the kernel can hand Ctrl-C only
    to the thread waiting for it in `serve_until_interrupted`; the caller's mask is left
    as it was."""
    import signal

    run_dir = write_prefix(full, tmp_path, last_step=3)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    server = open_live_view(run_dir, port=0)
    try:
        assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before
        assert sigint_blocked(server._renderer)
        assert signal.SIGINT not in before and not sigint_blocked(threading.current_thread())
    finally:
        server.close()


# signals sent to subprocesses on a timer: .ci/run's second layer, as the other kill tests
# (it failed once in the default run of this stop's final tree, 1 of 7 full runs, and
# passed 4 alone, 8 under two busy loops and 4 with tests/plots; the failing run's
# message was not kept)
@pytest.mark.e2e
def test_sigint_while_the_renderer_draws_exits_at_once(full, tmp_path):
    """Each SIGINT sent while a (pure-Python, GIL-holding) drawing runs ends `sgdwalk
    watch` with 130 and one line within seconds. The hang seen under load (no
    KeyboardInterrupt 15 s after the signal, the main thread still in serve_forever) does
    not reproduce on demand, so this checks the behaviour; the mask test above checks
    why the signal can no longer go astray."""
    import os
    import signal

    run_dir = write_prefix(full, tmp_path, last_step=3)
    code = ("import sys, time\n"
            "from sgdwalk.plots import live\n"
            "def busy(root):\n"
            "    print('drawing', flush=True)\n"
            "    end = time.monotonic() + 600\n"
            "    while time.monotonic() < end:\n"
            "        sum(range(1000))\n"
            "live.report_html = busy\n"
            "from sgdwalk.cli import main\n"
            f"sys.exit(main(['watch', {str(run_dir)!r}, '--port', '0', '--interval', "
            "'0.1']))\n")
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            # the renderer may start drawing before the address line is printed
            first = {proc.stdout.readline(), proc.stdout.readline()}
            assert "drawing\n" in first and any(x.startswith("watching ") for x in first)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            _, err = proc.communicate(timeout=30)
            assert time.monotonic() - started < 20
            assert proc.returncode == 130 and err.strip() == "sgdwalk: interrupted"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
