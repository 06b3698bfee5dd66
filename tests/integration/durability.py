"""Helpers for the durability tests (test_crash.py, test_durability.py).

- Workload: writer threads whose every write is recorded as acknowledged,
  failed or indeterminate, and a check of the store against that history;
- log/snapshot file helpers (the record framing of src/store/record.h);
- wrappers that run cairnd under strace or inside a private mount namespace.
"""
import glob
import http.client
import json
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time

import cairn

REC_HEADER = 32


def sanitized(binary):
    """True for sanitizer builds: the tests scale their loops down there."""
    return any(s in binary for s in ("address", "thread", "undefined"))


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v else default


# ---- files ----

def segments(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "log.*")))


def snapshots(data_dir):
    return sorted(p for p in glob.glob(os.path.join(data_dir, "snap.*")) if not p.endswith(".tmp"))


def record_offsets(path):
    """Offsets of the whole records in a log segment or snapshot (header record included)."""
    with open(path, "rb") as f:
        data = f.read()
    offs, off = [], 0
    while off + REC_HEADER <= len(data):
        (length,) = struct.unpack_from("<I", data, off + 4)
        if length < REC_HEADER or off + length > len(data):
            break
        offs.append(off)
        off += length
    return offs, len(data)


def flip(path, offset, mask=0x01):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ mask]))


def run_to_exit(binary, config_path, args=(), timeout=20, env=None):
    """Runs cairnd expecting it to exit on its own; returns (status, output)."""
    e = dict(os.environ)
    e.pop("NOTIFY_SOCKET", None)
    e.pop("LISTEN_FDS", None)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:exitcode=66")
    e.update(env or {})
    p = subprocess.run([binary, "-c", config_path] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, env=e)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def wrapper(d, name, prefix):
    """An executable script in d.dir that runs the real binary under 'prefix'."""
    path = os.path.join(d.dir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(prefix), d.real_binary))
    os.chmod(path, 0o755)
    return path


def make_daemon(binary=None, settings=None, env=None, args=(), prefix=None):
    """A Daemon not yet started; with 'prefix' (argv list) it runs as 'prefix... cairnd'."""
    env = dict(env or {})
    if prefix and "strace" in prefix:
        # LeakSanitizer cannot run under ptrace; the untraced runs of the same tests check leaks
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0:exitcode=66")
    d = cairn.Daemon(binary=binary, settings=settings, env=env, args=args, start=False)
    d.real_binary = os.path.abspath(d.binary)
    if prefix:
        d.binary = wrapper(d, "wrapped-cairnd", prefix)
    return d


def descendant_cairnd(pid):
    """The pid of the cairnd process at or below 'pid' (strace runs it as a child)."""
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/comm" % p) as f:
                if f.read().strip() == "cairnd":
                    return p
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return None


def stop_traced(d, sig=signal.SIGTERM, timeout=30):
    """Stops a daemon run under strace: the signal goes to cairnd itself, strace follows it out."""
    if d.proc is not None and d.proc.poll() is None:
        pid = descendant_cairnd(d.proc.pid)
        if pid is not None and pid != d.proc.pid:
            os.kill(pid, sig)
            try:
                d.proc.wait(timeout)  # strace leaves with its tracee's status
            except subprocess.TimeoutExpired:
                pass
    return d.stop(sig=sig, timeout=timeout)


class Namespace:
    """A private mount namespace holding a size-limited tmpfs at 'mountpoint', kept alive by
    a sleeping process; cairnd enters it with nsenter, the test reaches it through
    /proc/PID/root."""

    def __init__(self, mountpoint, size):
        os.makedirs(mountpoint, exist_ok=True)
        self.mountpoint = mountpoint
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             "mount -t tmpfs -o size=%s,mode=0700 cairn-test %s && echo ready && exec sleep 3600"
             % (size, mountpoint)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline().decode()
        if "ready" not in line:
            self.proc.kill()
            raise RuntimeError("cannot make a tmpfs in a private mount namespace: %s" % line)

    def path(self, rel=""):
        """A path in the namespace's tmpfs, as this process can open it."""
        return "/proc/%d/root%s/%s" % (self.proc.pid, self.mountpoint, rel)

    def prefix(self):
        return ["nsenter", "-t", str(self.proc.pid), "-m", "--"]

    def close(self):
        self.proc.kill()
        self.proc.wait()


class NotifyListener:
    """A NOTIFY_SOCKET for sd_notify messages; .messages collects what arrived."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                self.messages.append(self.sock.recv(4096).decode("utf-8", "replace"))
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


# ---- a workload whose history can be checked after a crash ----

ACKED, FAILED, UNKNOWN = "acked", "failed", "unknown"


def merge(target, patch):
    """RFC 7396."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


class Workload:
    """Writers that own disjoint keys: per key, the state after the last acknowledged write is
    certain, and at most the writer's one write in flight at the crash is not.

    model: key -> doc (dict) or None (absent). Keys are ("items", id) or ("single", name)."""

    def __init__(self, writers=8, pad=64, seed=None, snapshot_every=0):
        self.writers = writers
        self.pad = pad
        self.rnd = random.Random(seed)
        self.snapshot_every = snapshot_every
        self.model = {}
        self.etags = {}      # key -> ETag of the last acknowledged write, when known
        self.pending = {}    # key -> set of possible states from indeterminate writes
        self.counts = {ACKED: 0, FAILED: 0, UNKNOWN: 0}
        self.failures = []   # unexpected definite failures
        self.lock = threading.Lock()
        self.seq = 0
        self.cycle = 0

    def _next_seq(self):
        with self.lock:
            self.seq += 1
            return self.seq

    def _request(self, port, method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            h = {}
            if body is not None:
                body = json.dumps(body)
                h["Content-Type"] = "application/json"
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            c.close()

    def _writer(self, port, w, deadline, stop):
        rnd = random.Random(self.rnd.random())
        n = 0
        while not stop.is_set() and time.time() < deadline:
            n += 1
            with self.lock:
                mine = [k for k in self.model if k[0] == "items" and k[1].startswith("w%d-" % w)
                        and self.model[k] is not None]
            s = self._next_seq()
            roll = rnd.random()
            if w == 0 and self.snapshot_every and n % self.snapshot_every == 0:
                try:
                    self._request(port, "POST", "/v1/_admin/snapshot")
                except (OSError, http.client.HTTPException):
                    return
                continue
            if roll < 0.45 or not mine:
                key = ("items", "w%d-c%d-s%d" % (w, self.cycle, s))
                body = {"id": key[1], "w": w, "s": s, "pad": "p" * rnd.randint(0, self.pad)}
                method, path, result = "POST", "/v1/items", dict(body)
            elif roll < 0.70:
                key = rnd.choice(mine)
                body = {"w": w, "s": s, "put": True}
                method, path = "PUT", "/v1/items/" + key[1]
                result = dict(body, id=key[1])
            elif roll < 0.85:
                key = rnd.choice(mine)
                body = {"s": s, "patched": s % 7, "pad": None}
                method, path = "PATCH", "/v1/items/" + key[1]
                with self.lock:
                    result = merge(self.model[key], body)
            elif roll < 0.95:
                key = rnd.choice(mine)
                body, method, path, result = None, "DELETE", "/v1/items/" + key[1], None
            else:
                key = ("single", "cfg%d" % w)
                body = {"w": w, "s": s}
                method, path, result = "PUT", "/v1/cfg%d" % w, dict(body)
            try:
                status, headers, data = self._request(port, method, path, body)
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.pending.setdefault(key, []).append(result)
                    self.counts[UNKNOWN] += 1
                return  # the daemon is gone: this writer is done
            with self.lock:
                if 200 <= status < 300:
                    self.model[key] = result
                    self.etags[key] = headers.get("etag")
                    self.counts[ACKED] += 1
                    if result is not None and json.loads(data) != result:
                        self.failures.append("%s %s acknowledged %r, expected %r"
                                             % (method, path, data[:200], result))
                else:
                    self.counts[FAILED] += 1
                    if status < 500:
                        self.failures.append("%s %s -> %d %r" % (method, path, status, data[:200]))
                    else:
                        # a 5xx write may or may not be there (the fsync failed after the append)
                        self.pending.setdefault(key, []).append(result)

    def run(self, port, seconds, stop=None):
        """Runs the writers for up to 'seconds' or until they all lost the daemon."""
        stop = stop or threading.Event()
        deadline = time.time() + seconds
        ts = [threading.Thread(target=self._writer, args=(port, w, deadline, stop), daemon=True)
              for w in range(self.writers)]
        for t in ts:
            t.start()
        return ts

    def observed(self, d):
        """The store as key -> doc, from one export."""
        r = d.get("/v1/_export")
        assert r.status == 200, r
        db = r.json()
        out = {}
        for name, value in db.items():
            if isinstance(value, list):
                for doc in value:
                    out[(name, doc["id"])] = doc
            else:
                out[("single", name)] = value
        return out

    def verify(self, d, check_etags=40):
        """Every acknowledged write present and unchanged; nothing no client sent; writes
        whose reply never came wholly present or absent. Then the model takes what is there."""
        assert not self.failures, self.failures[:5]
        seen = self.observed(d)
        problems = []
        for key in set(self.model) | set(seen) | set(self.pending):
            want = self.model.get(key)
            got = seen.get(key)
            allowed = [want] + self.pending.get(key, [])
            if got not in allowed:
                if key not in self.model and key not in self.pending:
                    problems.append("%r is there but no client ever wrote it: %r" % (key, got))
                else:
                    problems.append("%r is %r; acknowledged state %r, in-flight %r"
                                    % (key, got, want, self.pending.get(key)))
        assert not problems, "%d problems after restart, e.g.:\n  %s" % (
            len(problems), "\n  ".join(problems[:10]))
        # ETags (revisions) of acknowledged writes survive the restart
        keys = [k for k in self.model if self.model[k] is not None and k not in self.pending
                and self.etags.get(k) and k[0] == "items"]
        for key in self.rnd.sample(keys, min(check_etags, len(keys))):
            r = d.get("/v1/items/" + key[1])
            assert r.status == 200 and r.headers.get("etag") == self.etags[key], (key, r, self.etags[key])
        self.model = {k: v for k, v in seen.items()}
        for k in self.pending:
            self.etags.pop(k, None)
        self.pending = {}
        self.cycle += 1
