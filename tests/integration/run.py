#!/usr/bin/env python3
"""Runs integration test modules: every function test_* in tests/integration/test_*.py.

usage: run.py [MODULE ...] [-k SUBSTRING]
A test takes no arguments (it makes its own Daemon) and fails by raising.
Prints `ok - module::test` / `not ok - module::test` and `N passed, N failed`.
"""
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main(argv):
    pattern = None
    if "-k" in argv:
        i = argv.index("-k")
        pattern = argv[i + 1]
        del argv[i:i + 2]
    names = argv or sorted(f[:-3] for f in os.listdir(HERE)
                           if f.startswith("test_") and f.endswith(".py"))
    passed = failed = 0
    for name in names:
        mod = importlib.import_module(name)
        tests = [(n, getattr(mod, n)) for n in dir(mod) if n.startswith("test_") and callable(getattr(mod, n))]
        tests.sort(key=lambda t: t[1].__code__.co_firstlineno)
        for tname, fn in tests:
            if pattern and pattern not in tname:
                continue
            t0 = time.time()
            try:
                fn()
                passed += 1
                print("ok - %s::%s (%.1fs)" % (name, tname, time.time() - t0), flush=True)
            except Exception:
                failed += 1
                print("not ok - %s::%s (%.1fs)" % (name, tname, time.time() - t0), flush=True)
                for line in traceback.format_exc().splitlines():
                    print("#   " + line)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
