"""Integration-test harness: starts the real cairnd binary on an ephemeral port.

Daemon(...) writes a config into a fresh temporary directory, starts the
binary, waits for its "listening on" line and gives a small HTTP client.
stop() sends SIGTERM and returns the exit status; sanitizer reports in the
daemon's stderr make stop() raise, so every test run under a sanitizer build
checks for them.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("CAIRND", os.path.join(ROOT, "build", "cairnd"))
FAULTS_BINARY = os.environ.get("CAIRND_FAULTS", os.path.join(ROOT, "build-faults", "cairnd"))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: ThreadSanitizer")


def render_config(settings):
    """libconfig text for a dict; dotted keys become groups."""
    groups, top = {}, []
    for key, value in settings.items():
        if "." in key:
            g, k = key.split(".", 1)
            groups.setdefault(g, []).append((k, value))
        else:
            top.append((key, value))

    def lit(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        return str(v)

    lines = ["%s = %s;" % (k, lit(v)) for k, v in top]
    for g, items in groups.items():
        lines.append("%s = {" % g)
        lines += ["    %s = %s;" % (k, lit(v)) for k, v in items]
        lines.append("};")
    return "\n".join(lines) + "\n"



def held_connection(port, source="127.0.0.1"):
    """A keep-alive connection from 'source' that has been served once, so libmicrohttpd
    holds it (and counts it against max_connections / the per-IP limit)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    out = b""
    while b'{"status":"ok"}' not in out:
        chunk = s.recv(4096)
        assert chunk, out
        out += chunk
    assert out.startswith(b"HTTP/1.1 200"), out
    return s

def problem(r, status):
    """Asserts 'r' is an RFC 9457 problem+json reply with 'status'; returns the document."""
    assert r.status == status, r
    assert r.headers["content-type"] == "application/problem+json", r
    doc = r.json()
    assert doc["status"] == status and doc["title"] and doc["type"] == "about:blank", doc
    assert doc["request_id"] == r.headers["x-request-id"], (doc, r.headers)
    return doc


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %r %r>" % (self.status, self.headers, self.body[:200])


class Daemon:
    def __init__(self, binary=None, settings=None, env=None, args=(), start=True):
        self.binary = binary or BINARY
        self.dir = tempfile.mkdtemp(prefix="cairn-test-")
        self.data_dir = os.path.join(self.dir, "data")
        os.mkdir(self.data_dir)
        self.settings = {"listen_port": 0, "store.data_dir": self.data_dir,
                         "store.sync": "none", "log_level": "info", "shutdown_timeout": 5}
        self.settings.update(settings or {})
        self.config_path = os.path.join(self.dir, "cairnd.conf")
        self.write_config(self.settings)
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=66")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=66")
        self.env.setdefault("TSAN_OPTIONS", "halt_on_error=1:exitcode=66:second_deadlock_stack=1")
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("LISTEN_FDS", None)
        self.env.pop("JOURNAL_STREAM", None)
        self.env.update(env or {})
        self.args = list(args)
        self.proc = None
        self.port = None
        if start:
            self.start()

    def write_config(self, settings):
        with open(self.config_path, "w") as f:
            f.write(render_config(settings))

    def start(self, timeout=15):
        self._log = open(self.log_path, "ab")
        self.log_offset = self._log.tell()
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"listening on (?:\[[0-9a-f:]+\]|[0-9.]+):(\d+)", self.log()[self.log_offset:])
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("cairnd exited with %s:\n%s" % (self.proc.returncode, self.log()))
            time.sleep(0.02)
        self.proc.kill()   # never leak a daemon that did not come up
        self.proc.wait()
        raise RuntimeError("cairnd did not start:\n" + self.log())

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the daemon; returns its exit status. Raises on sanitizer reports."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("cairnd did not stop within %ss:\n%s" % (timeout, self.log()[-4000:]))
        self._log.close()
        self.proc = None
        text = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                raise AssertionError("sanitizer report in cairnd's output:\n" + text[-8000:])
        return rc

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- HTTP ----
    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, timeout=10):
        h = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        own = conn is None
        c = conn or self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            if own:
                c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def raw(self, data, timeout=5, read_all=True):
        """Sends raw bytes; returns everything the server sent until it closed (or timeout)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
                if not read_all and b"\r\n\r\n" in out:
                    break
            return out
        finally:
            s.close()

    def stats(self, prefix="/v1"):
        return self.get(prefix + "/_stats").json()

    def wait_for(self, pred, timeout=5.0, interval=0.02):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(interval)
        return pred()
