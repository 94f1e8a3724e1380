"""A script for tests/reference_scripts.rs: shows how the forkserver runs a script.

Usage: forkserver_probe.py print ARG... | exit CODE | say MESSAGE | raise | die | import
print: its arguments, the first entry of sys.path, whether stdin is empty, a line each.
exit: sys.exit(CODE). say: sys.exit(MESSAGE). raise: an uncaught exception. die: SIGKILL to
itself. import: imports json's sibling 'colorsys' and prints whether it was loaded already.
"""
import os
import signal
import sys

command = sys.argv[1]
if command == "print":
    print(" ".join(sys.argv[2:]))
    print(sys.path[0])
    print("stdin empty" if sys.stdin.read() == "" else "stdin not empty")
elif command == "exit":
    sys.exit(int(sys.argv[2]))
elif command == "say":
    sys.exit(sys.argv[2])
elif command == "raise":
    raise ValueError("raised by forkserver_probe.py")
elif command == "die":
    os.kill(os.getpid(), signal.SIGKILL)
elif command == "import":
    print("loaded already" if "colorsys" in sys.modules else "not loaded")
    import colorsys  # noqa: F401
