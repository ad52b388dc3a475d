"""Command line: parse, build a config, call the library, print where the output went.

Every expected failure (bad config, missing data, unreadable store) is one line on stderr
and exit status 2; Ctrl-C checkpoints the run and exits with 130; a run of a sweep that
failed exits 1; a closed stdout (`| head`) exits 141 silently. Warnings are one line each.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from sgdwalk.errors import SgdwalkError, SgdwalkWarning

EPILOG = """examples:
  sgdwalk reproduce                          every study at cpu scale, then claims C1-C12
  sgdwalk train default                      the default preset on the embedded digits
  sgdwalk train default --set optim.lr=0.05 --set walk.preset=line
  sgdwalk train my_config.toml --out runs/
  sgdwalk resume runs/default-1a2b3c4d5e6f
  sgdwalk presets                            list the shipped presets and studies
  sgdwalk sweep lr-batch --scale cpu --workers 2
  sgdwalk claims runs/lr-batch               decide claims C1-C12 from stored runs
  sgdwalk report runs/lr-batch               one self-contained HTML file
  sgdwalk watch runs/default-1a2b3c4d5e6f    the report, refreshed while the run trains
  sgdwalk export runs/default-1a2b3c4d5e6f --format parquet
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        self.exit(2, f"sgdwalk: error: {message} (see sgdwalk --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sgdwalk",
        description="Watch SGD walk through a network's loss landscape: train with probes "
        "that measure the geometry of every step, and store it per step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sgdwalk {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    _add_training_commands(sub)
    _add_study_commands(sub)
    _add_result_commands(sub)
    return parser


def _add_study_commands(sub) -> None:
    """reproduce and sweep: many runs."""
    p = sub.add_parser("reproduce", help="run every study, then decide claims C1-C12 on "
                       "all of them and write one report",
                       description="Reproduce the study: train every study (see `sgdwalk "
                       "presets`) at one scale into OUT/<study>, as one sweep with one "
                       "progress view (runs already complete are skipped, interrupted ones "
                       "resume), then decide claims C1-C12 on all of them together and write "
                       "OUT/claims.json and OUT/report.html.")
    _add_scale(p)
    p.add_argument("--out", default=None, help="root folder (default: runs/reproduce)")
    p.add_argument("--workers", type=int, default=None,
                   help="runs trained at once (default: the number of CPU cores)")
    p.add_argument("--studies", default=None, metavar="A,B,...",
                   help="only these studies (default: all)")
    _add_backend(p)
    _add_overrides(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("sweep", help="run a study: a grid of runs, locally or on Ray",
                       description="Expand a study preset (see `sgdwalk presets`) or a study "
                       "TOML file into runs and train them. Runs already complete are "
                       "skipped, interrupted ones resume from their checkpoints, diverged "
                       "and failed ones (a run that raised, a worker that died) are recorded "
                       "and the sweep goes on. Exit status: 0 when every run completed or "
                       "diverged, 1 when a run failed, 130 after Ctrl-C, 2 on bad input.")
    p.add_argument("study", metavar="STUDY", help="study preset name or .toml file")
    _add_scale(p)
    p.add_argument("--workers", type=int, default=1, help="runs trained at once (default 1: "
                   "in this process; more: one worker process each)")
    _add_backend(p)
    p.add_argument("--out", default="runs", help="root folder (default: runs); runs go to "
                   "OUT/<study>/<name>-<id>")
    _add_overrides(p)
    _add_progress(p)
    p.set_defaults(func=_cmd_sweep)


def _add_training_commands(sub) -> None:
    """train, resume, presets, config: one run and its configuration."""
    p = sub.add_parser("train", help="train one run with probes",
                       description="Train one run. CONFIG is a preset name (see `sgdwalk "
                       "presets`) or a TOML file. The run goes to OUT/<name>-<id>, where id "
                       "is derived from the resolved config; starting the same config again "
                       "continues it.")
    p.add_argument("config", metavar="CONFIG", help="preset name or path to a .toml file")
    _add_overrides(p)
    p.add_argument("--out", default="runs", help="parent folder of run directories "
                   "(default: runs)")
    _add_progress(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("resume", help="continue a stopped run from its newest checkpoint",
                       description="Continue a stopped or killed run exactly where its newest "
                       "checkpoint left it; rows logged after that checkpoint are recomputed "
                       "with equal values. A checkpoint whose bytes do not match its .sha256 "
                       "file is passed over for the previous one (a warning); one of another "
                       "run, or of the wrong structure, is refused; so is a config.toml "
                       "edited since the run started, unless --fork.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--fork", action="store_true",
                   help="RUN_DIR's config.toml was edited: continue its newest checkpoint "
                   "under the edit as a new run beside it (its own id, recording its parent), "
                   "and restore RUN_DIR's config.toml (without --fork an edited config is "
                   "refused, naming the changed keys)")
    _add_progress(p)
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("presets", help="list the shipped presets and studies")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("config", help="print a preset's (or a TOML file's) full resolved config",
                       description="Print the full resolved config of a preset or a TOML file, "
                       "every key with its value and its comment's default, as the TOML a run "
                       "saves (config.toml). `sgdwalk config show default --set optim.lr=0.05`.")
    p.add_argument("action", choices=["show"], help="show: print the resolved config")
    p.add_argument("source", metavar="PRESET_OR_TOML", help="a preset name or a TOML file")
    _add_overrides(p)
    p.set_defaults(func=_cmd_config)


def _add_result_commands(sub) -> None:
    """claims, report, watch, export: what the runs stored."""
    p = sub.add_parser("claims", help="decide claims C1-C12 (and RV1-RV3) from a run or a sweep",
                       description="Decide each claim of the study whose inputs exist in "
                       "DIR (a run or a folder of runs): statistic, effect size, uncertainty, "
                       "verdict, and the runs and steps used. Prints a table; writes JSON.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--json", default=None, help="where to write the JSON (default: "
                   "DIR/claims.json)")
    p.set_defaults(func=_cmd_claims)

    p = sub.add_parser("report", help="write a self-contained HTML report for a run or sweep",
                       description="Write DIR/report.html: the claims table, the figures, "
                       "each run's config and the versions used. Opens offline.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", default=None, help="report path (default: DIR/report.html)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("watch", help="serve the report of a run or sweep on localhost, "
                       "refreshed as rows arrive",
                       description="Serve the HTML report of RUN_OR_SWEEP at "
                       "http://127.0.0.1:PORT/ and draw it again whenever new rows are "
                       "stored; the open page updates itself (no reload by hand). Read-only: "
                       "nothing is written. Runs until Ctrl-C.")
    p.add_argument("dir", metavar="RUN_OR_SWEEP")
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default 8765; "
                   "0 or a busy port: any free one, printed)")
    p.add_argument("--interval", type=float, default=None, metavar="S",
                   help="seconds between checks of the store (default 2)")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("export", help="write a run's scalar table as Parquet or CSV",
                       description="Write the scalar rows of the run in RUN_DIR (column "
                       "step, then one column per metric of docs/metrics.md) to a file "
                       "other tools read.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", dest="fmt", choices=("parquet", "csv"), default=None,
                   help="default: from the suffix of --out, else csv")
    p.add_argument("--out", default=None, help="the file (default: RUN_DIR/scalars.FORMAT)")
    p.set_defaults(func=_cmd_export)


def _add_overrides(p):
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config value, e.g. optim.lr=0.05 "
                   "or model.widths=64,32 (repeatable)")


def _add_scale(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", choices=("cpu", "fashion", "paper"), default="cpu",
                   help="cpu: embedded digits, seconds to minutes on 2 cores (default); "
                   "fashion: the study's MNIST MLP on a Fashion-MNIST subset, under an hour "
                   "on 2 cores; paper: the study's datasets and models")


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local worker processes (default) or Ray tasks")
    p.add_argument("--address", default=None, help="Ray cluster address; default: start a "
                   "local Ray instance")


def _add_progress(p):
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress bar")


def _cmd_reproduce(args) -> int:
    from sgdwalk.studies.reproduce import DEFAULT_OUT, parse_studies, reproduce

    result = reproduce(args.out or DEFAULT_OUT, scale=args.scale,
                       studies=parse_studies(args.studies), workers=args.workers,
                       backend=args.backend, address=args.address,
                       overrides=args.overrides, progress=args.progress)
    print(result.summary())
    if result.claims:
        print()
        print(result.table)
        print(f"claims written to: {result.claims_path}")
        print(f"report: {result.report_path}")
    return 130 if result.interrupted else 0 if result.ok else 1


def _cmd_train(args) -> int:
    from sgdwalk.config import load_config
    from sgdwalk.experiment import train

    config = load_config(args.config, args.overrides)
    return _report(train(config, args.out, progress=args.progress))


def _cmd_resume(args) -> int:
    from sgdwalk.experiment import fork, resume

    if args.fork:
        return _report(fork(args.run_dir, progress=args.progress))
    return _report(resume(args.run_dir, progress=args.progress))


def _cmd_presets(args) -> int:
    from sgdwalk.config import preset_names, preset_summary
    from sgdwalk.studies import study_names, study_summary

    for name in preset_names():
        print(f"{name:14s} {preset_summary(name)}")
    print("\nstudies (sgdwalk sweep NAME --scale cpu|fashion|paper):")
    for name in study_names():
        print(f"{name:14s} {study_summary(name)}")
    return 0


def _cmd_config(args) -> int:
    import dataclasses

    import tomli_w

    from sgdwalk.config import load_config, to_dict

    config = load_config(args.source, args.overrides)
    data = to_dict(config)
    out = [tomli_w.dumps({"name": data["name"]})]
    for field in dataclasses.fields(config):
        section = getattr(config, field.name)
        if not dataclasses.is_dataclass(section):
            continue
        out.append(tomli_w.dumps({field.name: data[field.name]}))
        # TOML has no null: a key left unset (None, "the default decides") is shown as a comment
        out.extend(f"# {key.name} = (unset)\n" for key in dataclasses.fields(section)
                   if getattr(section, key.name) is None)
        out.extend(f"# {key.name} = {{}}\n" for key in dataclasses.fields(section)
                   if getattr(section, key.name) == {})
    print("".join(out).replace("\n[", "\n\n[").strip())
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sgdwalk")
    except PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        return "unknown (not installed)"


def _cmd_sweep(args) -> int:
    from sgdwalk.studies import load_study, run_sweep

    study = load_study(args.study, scale=args.scale, overrides=args.overrides)
    result = run_sweep(study, args.out, workers=args.workers, backend=args.backend,
                       address=args.address, progress=args.progress)
    print(result.summary())
    print(f"sweep directory: {result.root}")
    return 130 if result.interrupted else 0 if result.ok else 1


def _cmd_claims(args) -> int:
    from sgdwalk.analysis import decide_claims, format_claims, write_claims_json
    from sgdwalk.store import load

    results = load(args.dir)
    claims = decide_claims(results)
    print(format_claims(claims))
    _print_notes(results.notes)
    path = write_claims_json(claims, args.json or Path(args.dir) / "claims.json")
    print(f"claims written to: {path}")
    return 0


def _cmd_report(args) -> int:
    from sgdwalk.plots.report import write_report
    from sgdwalk.store import load

    results = load(args.dir)
    path = write_report(results, args.out or Path(args.dir) / "report.html")
    print(f"report: {path}")
    _print_notes(results.notes)
    return 0


def _cmd_watch(args) -> int:
    from sgdwalk.plots.live import open_live_view

    server = open_live_view(args.dir, port=args.port, interval=args.interval)
    port = server.server_address[1]
    if args.port and port != args.port:
        print(f"sgdwalk: port {args.port} is busy; using {port}", file=sys.stderr)
    try:  # until Ctrl-C, taken synchronously (see serve_until_interrupted)
        server.serve_until_interrupted(
            lambda s: print(f"watching {args.dir} at {s.url}", flush=True))
    except KeyboardInterrupt:
        # the renderer thread may be inside pandas, pyarrow or matplotlib code: finalizing
        # the interpreter under it aborted ("terminate called without an active
        # exception", exit -6) in 3 of 24 tries. watch writes nothing, so it leaves
        # without finalizing, its output flushed.
        print("sgdwalk: interrupted", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_INTERRUPTED)


def _cmd_export(args) -> int:
    from sgdwalk.store import export_run

    out = args.out or Path(args.run_dir) / f"scalars.{args.fmt or 'csv'}"
    print(f"exported to: {export_run(args.run_dir, out, args.fmt)}")
    return 0


def _print_notes(notes) -> None:
    """What the reader left out or skipped, so no run is dropped silently."""
    for note in notes:
        print(f"note: {note}")


def _report(result) -> int:
    final = ", ".join(f"{k}={v:.4g}" for k, v in result.final.items() if isinstance(v, float))
    print(f"{result.status}: {result.steps} steps; {final}" if final else
          f"{result.status}: {result.steps} steps")
    print(f"see it: sgdwalk report {result.run_dir}  (HTML page of what the run stored)")
    print(f"run directory: {result.run_dir}")
    if result.status == "stopped":
        print(f"resume with: sgdwalk resume {result.run_dir}")
        return 130
    return 0


EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (docs/reliability.md, "Exit status"): 0 done (every
    run completed or diverged), 1 a run of a sweep failed, 2 bad input (one line), 130
    interrupted, 141 the reader of stdout went away (`| head`).

    Called as the program (argv None), a Ctrl-C after the command has finished (while the
    interpreter shuts down) exits 130 at once and silently."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SgdwalkWarning)
            warnings.showwarning = _show_warning
            code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except SgdwalkError as exc:
        print(f"sgdwalk: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("sgdwalk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Python's advice (the signal module's docs, "Note on SIGPIPE"): point stdout at
        # devnull so the flush at exit cannot fail again; exit as a process SIGPIPE ended
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    finally:
        if argv is None:
            _exit_quietly_on_sigint()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """sgdwalk's own warnings as one line; others as Python shows them."""
    if issubclass(category, SgdwalkWarning):
        print(f"sgdwalk: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _exit_quietly_on_sigint() -> None:
    """From now until the process ends (the atexit handlers of torch, tqdm's monitor
    thread and multiprocessing run after `main`), Ctrl-C ends it at once with 130 instead
    of a KeyboardInterrupt traceback from inside an atexit handler."""
    if threading.current_thread() is not threading.main_thread():
        return

    def leave(signum, frame):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(EXIT_INTERRUPTED)

    signal.signal(signal.SIGINT, leave)


if __name__ == "__main__":
    sys.exit(main())
