"""Runs the reference scripts of one test binary in forks of one Python process, so that the
heavy imports of the oracles (rembg, pymatting and numba, scipy, librosa: 1-1.5 s of CPU each
time) are paid once a binary instead of once a script.

Usage: forkserver.py READY_FILE SOCKET
Listens on the Unix socket SOCKET, then writes READY_FILE. A request is one line of JSON,
{"argv": [SCRIPT, ARG...], "stdout": PATH, "stderr": PATH}; the script runs as
`python SCRIPT ARG...` would run it (its folder first on sys.path, __name__ "__main__", stdin
empty), in a child forked for it, with its output in those files, and the answer is one line,
{"status": STATUS}: its exit status, or the signal that ended it, negated.

Before each fork the server imports the packages that the children before it imported (never the
scripts' own modules): the first script of a binary pays its imports, the ones after it find
them loaded. The server ends when the process that started it does.
"""
import atexit
import json
import os
import runpy
import socket
import sys
import threading
import time
import traceback

SCRIPTS = os.path.dirname(os.path.abspath(__file__))

# Importing pymatting (and so rembg) runs numba code that starts numba's threads; with its
# default OpenMP layer a fork after that ends the child ("fork() called from a process already
# using GNU OpenMP"). The workqueue layer forks safely, and pymatting's results are the same
# to the bit (checked on rembg's alpha_matting_cutout and estimate_foreground_ml).
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")


def packages_of(modules):
    """Top-level packages among `modules` that are not the reference scripts' own."""
    found = set()
    for name, module in list(modules.items()):
        top = name.split(".")[0]
        if top == "__main__" or top.startswith("_"):
            continue
        path = getattr(module, "__file__", None) or ""
        if path.startswith(SCRIPTS):
            continue
        found.add(top)
    return found


def run_script(argv, stdout, stderr):
    """The child's work: the script as __main__, its exit status as Python would give it."""
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
    sys.argv = list(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    status = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as end:
        if end.code is None:
            status = 0
        elif isinstance(end.code, int):
            status = end.code
        else:
            print(end.code, file=sys.stderr)
            status = 1
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
        status = status or 1
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def serve(connection, learned, lock):
    """One request: fork, run, answer; what the child imported is reported through a pipe."""
    with connection, connection.makefile("rb") as requests:
        request = json.loads(requests.readline())
        # Imports and forks one at a time: a fork never copies an import half done, nor the
        # write end of another child's report pipe (whose reader would then wait for both).
        with lock:
            for package in sorted(learned - set(sys.modules)):
                try:
                    __import__(package)
                except BaseException:
                    learned.discard(package)
            before = set(sys.modules)
            report_read, report_write = os.pipe()
            child = os.fork()
            if child:
                os.close(report_write)
        if child == 0:
            os.close(report_read)
            status = 1
            try:
                status = run_script(request["argv"], request["stdout"], request["stderr"])
                imported = {name: sys.modules[name] for name in set(sys.modules) - before}
                with os.fdopen(report_write, "w") as report:
                    report.write("\n".join(sorted(packages_of(imported))))
            finally:
                os._exit(status)
        with os.fdopen(report_read) as report:
            learned.update(line for line in report.read().splitlines() if line)
        _, wait_status = os.waitpid(child, 0)
        status = os.waitstatus_to_exitcode(wait_status)
        connection.sendall((json.dumps({"status": status}) + "\n").encode())


def answer(connection, learned, lock):
    try:
        serve(connection, learned, lock)
    except Exception:
        traceback.print_exc()


def main():
    ready, path = sys.argv[1:3]
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    with open(ready + ".part", "w") as f:
        f.write(path + "\n")
    os.rename(ready + ".part", ready)
    learned = set()
    lock = threading.Lock()

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    while True:
        connection, _ = listener.accept()
        threading.Thread(target=answer, args=(connection, learned, lock), daemon=True).start()


if __name__ == "__main__":
    main()
