"""The live view: the HTML report of a run or a sweep, served on 127.0.0.1 while it trains.

`open_live_view(root, port, interval)` starts, with the standard library only:

- a renderer thread that every `interval` seconds (or, after a slow drawing, as long as
  that drawing took) reads a small fingerprint of the store (`read_state`: per run, its
  status, newest step and number of `loss` rows) and draws the report again only when the
  fingerprint changed;
- a `ThreadingHTTPServer` (at most MAX_CLIENTS requests at once) answering from memory:

      GET /          the newest report, a banner (`#live-step`: the newest step drawn) and
                     a small inline script
      GET /version   {"version": v, "step": s, "rows": r, "runs": n, "status": {...}}

The script polls /version every `interval` seconds; when v changed it fetches / and swaps
the <body> in place (no reload: scroll position and open <details> are kept). Nothing is
fetched from anywhere else, so the page stays one self-contained file.

Read-only: each poll asks the store (`run_progress`, then `load`), which opens the metric
stores with mode=ro (SQLite in WAL mode: a reader sees a committed prefix and never blocks
the writer), and nothing is written, not even report.html. Until the report can be drawn
(no rows yet, no epoch ended yet) / serves a "waiting for the first rows" page that swaps
itself out. Never imports torch.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from sgdwalk.errors import ConfigError, StoreError

HOST = "127.0.0.1"  # never reachable from another machine: the report holds configs and paths
DEFAULT_PORT = 8765
DEFAULT_INTERVAL = 2.0  # seconds; rows are committed every train.flush_every steps anyway
MAX_CLIENTS = 8  # requests served at once; more wait in the listen queue


def report_html(root) -> str:
    """The report of the run or sweep at `root` as one HTML string.

    The live view's only call into the report code: re-point it here when the report's
    entry point moves."""
    from sgdwalk.analysis import Tables
    from sgdwalk.plots.report import render_report
    from sgdwalk.store import load

    # a sweep being watched is mostly unfinished runs: draw them as far as they got
    return render_report(Tables(load(root, include_unfinished=True)))


@dataclass(frozen=True)
class StoreState:
    """What the live view compares between polls. runs: one (run folder, status, newest
    step, rows of `loss`) per run; step = max newest step (-1: none); rows = total rows."""

    runs: tuple[tuple[str, str, int, int], ...] = ()

    @property
    def step(self) -> int:
        return max((r[2] for r in self.runs), default=-1)

    @property
    def rows(self) -> int:
        return sum(r[3] for r in self.runs)

    def statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.runs:
            out[r[1]] = out.get(r[1], 0) + 1
        return out


def read_state(root) -> StoreState:
    """The fingerprint of every run at or under `root`, read by the store (read-only; see
    `sgdwalk.store.run_progress`)."""
    from sgdwalk.store import run_progress

    return StoreState(run_progress(root))


class LiveReport:
    """The newest page of `root` and its version; `refresh()` draws it again when the
    store changed. Thread-safe: the renderer writes, request threads read."""

    def __init__(self, root, interval: float = DEFAULT_INTERVAL):
        self.root = Path(root)
        self.interval = interval
        self._lock = threading.Lock()
        # the state drawn last (or the error shown last); None: nothing yet
        self._seen: StoreState | str | None = None
        self._drawn = StoreState()  # the state the served page shows
        self._version = 0
        self._page = self._wrap(waiting_page(self.root.name), self._drawn)
        # seconds until the next poll: at least as long as the last drawing took, so that
        # on a large sweep drawing never takes more than about half of one core
        self.pause = interval

    def refresh(self) -> bool:
        """Draw the page again if the store changed since the last draw; True when it did.
        A report that cannot be drawn yet gives the waiting page with the reason."""
        try:
            state = read_state(self.root)
        except StoreError as exc:  # the folder went away: say so (once), keep polling
            if self._seen == str(exc):
                return False
            self._seen = str(exc)
            return self._publish(waiting_page(self.root.name, str(exc)), StoreState())
        if state == self._seen:
            return False
        self._seen = state
        if state.rows == 0:
            return self._publish(waiting_page(self.root.name), state)
        started = time.monotonic()
        try:
            report = report_html(self.root)
        except Exception as exc:  # noqa: BLE001 -- a half-written run can trip any figure
            # or claim (one epoch, one row); the next change of the store draws it again
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return self._publish(waiting_page(self.root.name, reason, state.rows), state)
        finally:
            self.pause = max(self.interval, time.monotonic() - started)
        return self._publish(report, state)

    def page(self) -> bytes:
        with self._lock:
            return self._page

    def version(self) -> dict:
        """The version of the served page and what it shows: newest step, rows, statuses."""
        with self._lock:
            s = self._drawn
            return {"version": self._version, "step": s.step, "rows": s.rows,
                    "runs": len(s.runs), "status": s.statuses()}

    def _publish(self, report: str, state: StoreState) -> bool:
        with self._lock:
            self._version += 1
            self._drawn = state
            self._page = self._wrap(report, state)
        return True

    def _wrap(self, report: str, state: StoreState) -> bytes:
        return live_page(report, state, self._version, self.interval).encode()


def waiting_page(name: str, reason: str | None = None, rows: int = 0) -> str:
    """A minimal page shown until the report can be drawn."""
    from sgdwalk.plots.report import CSS

    e = html.escape
    what = (f"{rows} rows stored; the report cannot be drawn yet" if rows else
            "waiting for the first rows")
    why = f"<p class='skipped'>{e(reason)}</p>" if reason else ""
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<title>sgdwalk live: {e(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>sgdwalk live view: {e(name)}</h1>\n<p id='waiting'>{e(what)}: this page "
            f"updates itself when they arrive.</p>\n{why}\n</body>\n</html>\n")


# Polls /version; on a new version fetches / and swaps <body> in place. It lives in <head>
# so that swapping the body never removes it; its timer survives every swap.
SCRIPT = """<script>
(function () {
  var version = %(version)d, busy = false;
  function note(text) {
    var el = document.getElementById('live-note');
    if (el) { el.textContent = text; }
  }
  function swap(text) {
    var doc = new DOMParser().parseFromString(text, 'text/html');
    var x = window.scrollX, y = window.scrollY;
    var open = Array.prototype.map.call(document.querySelectorAll('details'),
                                        function (d) { return d.open; });
    document.documentElement.replaceChild(document.importNode(doc.body, true), document.body);
    Array.prototype.forEach.call(document.querySelectorAll('details'),
                                 function (d, i) { if (open[i]) { d.open = true; } });
    window.scrollTo(x, y);
    version = Number(document.body.getAttribute('data-version'));
  }
  function poll() {
    if (busy) { return; }
    busy = true;
    fetch('/version', {cache: 'no-store'})
      .then(function (r) { return r.json(); })
      .then(function (v) {
        if (v.version === version) { note(''); return; }
        return fetch('/', {cache: 'no-store'})
          .then(function (r) { return r.text(); }).then(swap);
      })
      .catch(function () { note('disconnected: is sgdwalk watch still running?'); })
      .then(function () { busy = false; });
  }
  setInterval(poll, %(every_ms)d);
})();
</script>"""

BANNER = ("<div id='live' style='position: sticky; top: 0; z-index: 1; background: #eef4fb; "
          "border: 1px solid #c9d9ec; padding: 0.3em 0.6em; font-size: 0.9em;'>"
          "<strong>live</strong> · {runs} · newest step <span id='live-step'>{step}</span> · "
          "<span id='live-rows'>{rows}</span> steps stored · drawn {now} · checks every "
          "{interval:g} s <span id='live-note' style='color: #7a1010;'></span></div>")


def live_page(report: str, state: StoreState, version: int, interval: float) -> str:
    """`report` as served live: the polling script before </head>, `data-version` on
    <body>, and a banner with what the page shows (runs, newest step, time drawn)."""
    counts = ", ".join(f"{n} {s}" for s, n in sorted(state.statuses().items()))
    runs = f"{len(state.runs)} run{'s' if len(state.runs) != 1 else ''}"
    now = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S UTC")
    banner = BANNER.format(runs=html.escape(f"{runs} ({counts})" if counts else runs),
                           step=state.step, rows=state.rows, now=now, interval=interval)
    script = SCRIPT % {"version": version, "every_ms": max(1, round(interval * 1000))}
    page = report.replace("</head>", script + "\n</head>", 1)
    return re.sub(r"<body[^>]*>", lambda _: f"<body data-version='{version}'>\n{banner}",
                  page, count=1)


class _Handler(BaseHTTPRequestHandler):
    timeout = 30  # seconds; a stalled client is dropped and its thread ends

    def do_GET(self):  # noqa: N802 -- the name http.server dispatches to
        live: LiveReport = self.server.live
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            body, kind = live.page(), "text/html; charset=utf-8"
        elif path == "/version":
            body, kind = json.dumps(live.version()).encode(), "application/json"
        else:
            self.send_error(404, "the live view serves / and /version")
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 -- quiet: polls would flood stderr
        pass


class LiveServer(ThreadingHTTPServer):
    """The HTTP server of one LiveReport, with its renderer thread. `url` is where it
    listens; `serve_forever()` until Ctrl-C, then `close()`."""

    daemon_threads = True  # a client still connected never keeps the process alive

    def __init__(self, live: LiveReport, port: int):
        self.live = live
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._stop = threading.Event()
        self._renderer = threading.Thread(target=self._render, name="sgdwalk-live",
                                          daemon=True)
        super().__init__((HOST, port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    def start(self) -> LiveServer:
        """Start the renderer thread, with SIGINT blocked in it (`_without_sigint`)."""
        with _without_sigint():
            self._renderer.start()
        return self

    def close(self) -> None:
        """Stop rendering and listening (a render in progress ends on its own: the thread
        is a daemon and writes nothing)."""
        self._stop.set()
        self.server_close()

    def serve_until_interrupted(self, ready=None) -> None:
        """Serve on a daemon thread until SIGINT (Ctrl-C), then close and raise
        KeyboardInterrupt; `ready(self)` is called once the server answers. Call it from
        the main thread (the CLI does).

        Why not `serve_forever()` in the main thread, with Ctrl-C as KeyboardInterrupt:
        under load that SIGINT was sometimes never acted on (faulthandler, 15 s after the
        signal: the main thread still polling in `serve_forever`, the renderer idle; 3
        tries of one series, none of about 40 later; the path inside the interpreter was
        not pinned down). Here no asynchronous handler is involved: SIGINT is blocked in
        every thread of the server (renderer, HTTP loop, and the request threads, which
        inherit the mask) and in the caller, which takes it with `signal.sigwait`, so it
        can neither be delivered to another thread nor wait for the interpreter to run
        its handler."""
        with _without_sigint():
            threading.Thread(target=self.serve_forever, name="sgdwalk-live-http",
                             daemon=True).start()
            try:
                if ready is not None:
                    ready(self)
                signal.sigwait({signal.SIGINT})
            finally:
                self.close()
        raise KeyboardInterrupt

    def process_request(self, request, client_address):
        self._slots.acquire()  # bounded: the next request waits until a thread ends
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _render(self) -> None:
        while not self._stop.is_set():
            self.live.refresh()
            self._stop.wait(self.live.pause)


class _without_sigint:
    """Block SIGINT in the calling thread for the block's duration, so that threads
    started inside it inherit the block (a new thread copies its creator's mask); the
    caller's mask is restored on exit."""

    def __enter__(self):
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        return self

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
        return False


def open_live_view(root, port: int | None = None, interval: float | None = None) -> LiveServer:
    """Check that `root` is a run or a sweep folder, listen on 127.0.0.1:`port` (default
    8765; 0 or a busy port: a free one, see `.url`) and start drawing the report every
    `interval` seconds (default 2) while it changes."""
    port = DEFAULT_PORT if port is None else port
    interval = DEFAULT_INTERVAL if interval is None else interval
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"watch --port: expected an integer in 0..65535, got {port!r}")
    if not isinstance(interval, (int, float)) or not math.isfinite(interval) \
            or not 0.1 <= interval <= 3600:
        raise ConfigError(f"watch --interval: expected seconds in 0.1..3600, got {interval!r}")
    root = check_watchable(root)
    live = LiveReport(root, float(interval))
    try:
        server = LiveServer(live, port)
    except OSError:  # busy, or not ours to take: any free port will do
        server = LiveServer(live, 0)
    return server.start()


def check_watchable(root) -> Path:
    """`root` as a Path when it holds a run (config.toml and metrics.sqlite, at or below
    it) or is a sweep folder (sweep.json); StoreError otherwise."""
    from sgdwalk.store import find_runs, read_manifest

    root = Path(root)
    if not root.is_dir():
        got = "a file" if root.exists() else "no such folder"
        raise StoreError(f"watch {root}: expected a run or a sweep folder, got {got}")
    if not find_runs(root) and read_manifest(root) is None:
        raise StoreError(f"watch {root}: expected a run or a sweep folder (config.toml and "
                         "metrics.sqlite, or sweep.json), got a folder without runs")
    return root
