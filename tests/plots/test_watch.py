"""`sgdwalk watch` against a run that is still training: a real `sgdwalk train` in one
subprocess, `sgdwalk watch --port 0` on its folder in another; the steps served grow
between two fetches, and in headless Chromium rows appear in a page that was loaded once
(read twice through the DevTools protocol, no reload). Every wait is bounded and every
subprocess is killed, whatever happens."""

import base64
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.e2e

WATCHING = re.compile(r"watching (.+) at (http://127\.0\.0\.1:(\d+)/)")
LIVE_STEP = re.compile(r"<span id='live-step'>(-?\d+)</span>")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1200,900")


def wait_for(what, check, timeout, every=0.5):
    """The first truthy check() within `timeout` seconds; fails the test naming `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def start(cmd, **kw):
    """A subprocess in its own process group (Chromium's helpers are killed with it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, start_new_session=True, **kw)


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def lines_of(stream):
    """A queue receiving the lines of `stream`, read by a daemon thread (bounded reads)."""
    q = queue.Queue()
    threading.Thread(target=lambda: [q.put(line) for line in stream], daemon=True).start()
    return q


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def cli(*args):
    return [sys.executable, "-m", "sgdwalk.cli", *args]


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """A `default` run with the cheap walk that trains until the tests end (5000 epochs,
    far more than they wait for; rows committed every 5 steps), and `sgdwalk watch --port
    0` on its folder: yields (train process, run folder, url)."""
    out = tmp_path_factory.mktemp("runs")
    logs = tmp_path_factory.mktemp("logs")
    procs = []
    try:
        with open(logs / "train.out", "w") as log:
            train = start(cli("train", "default", "--set", "train.epochs=5000", "--set",
                              "walk.preset=cheap", "--set", "train.flush_every=5", "--out",
                              str(out), "--no-progress"), stdout=log, stderr=subprocess.STDOUT)
        procs.append(train)
        # the run's own folder, not the hidden one it is made in before the rename
        run_dir = wait_for("the run folder", lambda: next(
            (p.parent for p in out.glob("*/metrics.sqlite")
             if not p.parent.name.startswith(".")), None), 240)
        with open(logs / "watch.err", "w") as log:
            watch = start(cli("watch", str(run_dir), "--port", "0", "--interval", "0.5"),
                          stdout=subprocess.PIPE, stderr=log, text=True)
        procs.append(watch)
        printed = lines_of(watch.stdout)
        try:
            line = printed.get(timeout=120).strip()
        except queue.Empty:
            pytest.fail("watch printed no address within 120 s")
        found = WATCHING.fullmatch(line)
        assert found and found.group(1) == str(run_dir) and int(found.group(3)) > 0, line
        yield train, run_dir, found.group(2)
    finally:
        for p in procs:
            stop(p)


def served_step(url):
    """The newest step the served page shows, once the report (not the waiting page) is up."""
    page = get(url)
    found = LIVE_STEP.search(page)
    return int(found.group(1)) if found and "<table id='runs'>" in page else None


def test_the_steps_served_grow_while_the_run_trains(training):
    train, run_dir, url = training
    first = wait_for("a drawn report", lambda: served_step(url), 240)
    version = json.loads(get(url + "version"))
    assert train.poll() is None, "the run is still training"
    assert version["step"] >= first and version["status"] == {"running": 1}
    later = wait_for("a later step", lambda: (s := served_step(url)) and s > first and s, 240)
    assert later > first
    newer = json.loads(get(url + "version"))
    assert newer["version"] > version["version"] and newer["rows"] > version["rows"]
    assert train.poll() is None
    assert not (run_dir / "report.html").exists()  # read-only: nothing written


class DevTools:
    """A minimal client of Chromium's DevTools protocol over one websocket (RFC 6455:
    client frames masked, text only; events are skipped)."""

    def __init__(self, ws_url, timeout=60):
        u = urlsplit(ws_url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self._read(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the websocket")
            data += chunk
        return data

    def _send(self, text):
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 2**16 else
                                bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _receive(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n >= 126:
                n = int.from_bytes(self._read(2 if n == 126 else 8), "big")
            message += self._read(n)
            if b0 & 0x80:  # FIN: the last fragment
                return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def close(self):
        self.sock.close()


# What the page shows now: the probe set on `window` (gone after a reload), the banner's
# newest step, and the "steps" cell of the runs table (null on the waiting page).
READ_PAGE = """JSON.stringify((function () {
  var t = document.getElementById('runs'), steps = null;
  if (t && t.rows.length > 1) {
    var head = Array.prototype.map.call(t.rows[0].cells, function (c) { return c.textContent; });
    steps = Number(t.rows[1].cells[head.indexOf('steps')].textContent);
  }
  var live = document.getElementById('live-step');
  return {probe: window.sgdwalkProbe || null, step: live ? Number(live.textContent) : null,
          steps: steps};
})())"""


@pytest.mark.browser
def test_rows_appear_in_the_browser_without_a_reload(training, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no headless Chromium on PATH (Debian: apt-get install chromium)")
    train, _, url = training
    profile = tmp_path / "profile"
    chrome = start([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tools = None
    try:
        port_file = profile / "DevToolsActivePort"
        port = wait_for("DevToolsActivePort", lambda: port_file.is_file() and
                        port_file.read_text().split("\n")[0].strip(), 120)
        targets = wait_for("the page target", lambda: [
            t for t in json.loads(get(f"http://127.0.0.1:{port}/json/list"))
            if t["type"] == "page" and t["url"].startswith(url)], 60)
        tools = DevTools(targets[0]["webSocketDebuggerUrl"])

        def read():
            return json.loads(tools.evaluate(READ_PAGE))

        first = wait_for("the report in the browser", lambda: (r := read())["steps"] and r, 240)
        tools.evaluate("window.sgdwalkProbe = 'loaded once'")
        assert train.poll() is None, "the run is still training"
        later = wait_for("new rows in the open page", lambda: (
            (r := read())["steps"] and r["steps"] > first["steps"] and r), 240)
        assert later["probe"] == "loaded once", "the page was reloaded, not updated in place"
        assert later["steps"] > first["steps"] and later["step"] > first["step"]
        shot = base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"])
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        (tmp_path / "live_view.png").write_bytes(shot)
    finally:
        if tools is not None:
            tools.close()
        stop(chrome)


def test_ctrl_c_stops_watch_with_130_and_no_traceback(training):
    _, run_dir, _ = training
    watch = start(cli("watch", str(run_dir), "--port", "0"), stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    try:
        printed = lines_of(watch.stdout)
        line = printed.get(timeout=120)
        assert WATCHING.fullmatch(line.strip()), line
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=60)
        assert watch.returncode == 130
        assert err.strip().splitlines() == ["sgdwalk: interrupted"], err
    finally:
        stop(watch)


def test_watch_on_a_folder_without_runs_exits_2_with_one_line(tmp_path):
    proc = subprocess.run(cli("watch", str(tmp_path)), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "expected a run or a sweep folder" in err[0], proc.stderr


def test_a_busy_port_is_replaced_by_a_free_one_and_printed(training):
    _, run_dir, url = training
    busy = urlsplit(url).port  # the first watch holds it
    watch = start(cli("watch", str(run_dir), "--port", str(busy)), stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    try:
        line = lines_of(watch.stdout).get(timeout=120)
        found = WATCHING.fullmatch(line.strip())
        assert found, line
        port = int(found.group(3))
        assert port not in (0, busy)
        assert json.loads(get(found.group(2) + "version"))["runs"] in (0, 1)  # it answers
        watch.send_signal(signal.SIGINT)
        _, err = watch.communicate(timeout=60)
        assert f"sgdwalk: port {busy} is busy; using {port}" in err.splitlines()
    finally:
        stop(watch)
