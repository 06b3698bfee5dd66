"""Bad config files at start (exit 78, file:line) and reloads (good, bad, under load)."""
import os
import signal
import subprocess
import tempfile
import threading
import time

from cairn import BINARY, Daemon

BAD = [
    ("syntax error", "threads = 2;\nlisten_port = = 1;\n", 2, "syntax error"),
    ("unknown key", "listen_port = 0;\nthreds = 2;\n", 2, "'threds' is not a known setting"),
    ("wrong type", "listen_port = \"0\";\n", 1, "must be an integer"),
    ("out of range", "threads = 0;\n", 1, "between 1 and 64"),
    ("wrapped integer", "listen_port = 0;\nmax_body_bytes = 99999999999;\n", 2, "out of range"),
    ("include", "@include \"/etc/passwd\"\n", 1, "@include is not allowed"),
]


def run_bad(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad.conf")
        with open(path, "w") as f:
            f.write(text)
        before = set(os.listdir(tmp))
        t0 = time.time()
        out = subprocess.run([BINARY, "-c", path], capture_output=True, text=True, timeout=10)
        assert time.time() - t0 < 2
        assert set(os.listdir(tmp)) == before   # nothing created
        return path, out


def test_bad_config_exits_78_with_file_line():
    for name, text, line, want in BAD:
        path, out = run_bad(text)
        assert out.returncode == 78, (name, out)
        first = out.stderr.strip().splitlines()[0]
        assert first.startswith("%s:%d: " % (path, line)) and want in first, (name, first)


def test_check_config_flag():
    for name, text, line, want in BAD[:2]:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "c.conf")
            with open(path, "w") as f:
                f.write(text)
            out = subprocess.run([BINARY, "-c", path, "--check-config"], capture_output=True, text=True)
            assert out.returncode == 78 and "%s:%d:" % (path, line) in out.stderr, out


def test_missing_config_file():
    out = subprocess.run([BINARY, "-c", "/nonexistent/cairnd.conf"], capture_output=True, text=True)
    assert out.returncode == 78
    assert "/nonexistent/cairnd.conf: cannot open: No such file or directory" in out.stderr, out


def generation(d):
    return d.stats()["gauges"]["config_generation"]


def test_reload_good_and_bad():
    d = Daemon()
    try:
        assert generation(d) == 1
        settings = dict(d.settings, max_body_bytes=12345)
        d.write_config(settings)
        d.send_signal(signal.SIGHUP)
        assert d.wait_for(lambda: generation(d) == 2)
        # a broken file: logged with file:line, old config kept, still serving
        with open(d.config_path, "a") as f:
            f.write("threads = = 3;\n")
        d.send_signal(signal.SIGHUP)
        assert d.wait_for(lambda: d.stats()["counters"]["config_reload_failures"] == 1)
        assert generation(d) == 2
        assert "reload refused, keeping the running config: %s:" % d.config_path in d.log()
        assert d.get("/healthz").status == 200
        # a restart-only key: the reload applies, the key keeps its running value
        d.write_config(dict(settings, threads=7))
        d.send_signal(signal.SIGHUP)
        assert d.wait_for(lambda: generation(d) == 3)
        assert "'threads' changed; it takes effect only after a restart" in d.log()
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_bad_reloads_under_load_fail_no_request():
    d = Daemon()
    try:
        stop = threading.Event()
        errors, done = [], [0]

        def client():
            c = d.conn()
            while not stop.is_set() and done[0] < 200000:
                try:
                    r = d.get("/healthz", conn=c)
                    if r.status != 200:
                        errors.append(r.status)
                    done[0] += 1
                except Exception as e:   # any failure counts
                    errors.append(repr(e))
                    c = d.conn()
        ts = [threading.Thread(target=client) for _ in range(4)]
        for t in ts:
            t.start()
        good = dict(d.settings)
        for i in range(20):
            if i % 5 == 4:
                d.write_config(dict(good, max_body_bytes=1000 + i))
            else:
                with open(d.config_path, "w") as f:
                    f.write("listen_port = %d;\nnot_a_key = 1;\n" % i)
            d.send_signal(signal.SIGHUP)
            # one signal at a time: two pending SIGHUPs would merge into one
            assert d.wait_for(lambda: (lambda c: c["config_reloads"] + c["config_reload_failures"])(
                d.stats()["counters"]) == i + 1)
        time.sleep(0.2)
        stop.set()
        for t in ts:
            t.join()
        s = d.stats()
        assert errors == [], errors[:5]
        assert done[0] > 100
        assert s["counters"]["config_reload_failures"] == 16, s["counters"]
        assert s["gauges"]["config_generation"] == 5
        assert d.stop() == 0
    finally:
        d.cleanup()
