"""Runs the test binaries cargo built side by side, a few at a time, and prints what each said.

Usage: test_lanes.py LANES TIMES_FILE -- BINARY... [-- DOC_TEST_COMMAND...]

Many binaries spend much of their time waiting (for a Triton or SageMaker server, a Python
oracle starting, a timeout being tested, a live source's clock), so two cores do more with two
binaries running than with one. The longest run first, as the last run's TIMES_FILE says (or a
fixed guess the first time), so that no long one starts last. Each binary's output is printed
whole when it ends, never interleaved, and every binary runs even after one fails. A binary
still running after NEURALFX_TEST_BINARY_LIMIT seconds (600: three times the slowest on a new
machine) is reported as hung: its threads' stacks are printed (gdb), then it is killed with what
it started (its own session), what it printed so far is shown (libtest names the tests running
for over 60 seconds), and it runs once more, its verdict that of the second run (a second hang
fails). Prints the seconds each took, slowest first, and exits 1 if any failed.
"""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# The first time (no times file yet, as on CI's clean clone): the binaries that took longest on
# a 2-core machine with the set-up done, longest first. A slow binary missing here would start
# among the last and leave one core idle at the end.
KNOWN_SLOW = [
    "triton", "pipelines", "readme_commands", "rembg_parity", "openvino", "alpha_matting",
    "rembgfilter_controls", "sagemaker", "lipsyncsrc", "speech_features", "foreground", "lipsync",
    "edge_refinement", "rembgfilter_live", "rembgfilter", "rembgfilter_slow_model",
    "model_download", "rembgfilter_overlap", "selfie_parity", "remote_security", "matting_models",
]


def name_of(binary):
    """tests/NAME.rs builds deps/NAME-HASH; the library's unit tests are gstneuralfx-HASH."""
    return os.path.basename(binary).rsplit("-", 1)[0]


def read_times(path):
    times = {}
    try:
        with open(path) as f:
            for line in f:
                seconds, name = line.split()
                times[name] = float(seconds)
    except (OSError, ValueError):
        return {}
    return times


def stacks_of(pid):
    """Where every thread of a hung binary waits, and what else runs in its session (gdb, where
    installed), so that a hang on a machine nobody can log into is diagnosed from the log."""
    report = []
    session = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if entry.isdigit() and int(fields[3]) == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    command = f.read().replace(b"\0", b" ").decode(errors="replace")
                session.append(f"{entry}: {command}")
        except (OSError, IndexError, ValueError):
            continue
    report.append("processes of its session:\n  " + "\n  ".join(session))
    try:
        traced = subprocess.run(
            ["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 30"],
            capture_output=True, text=True, timeout=120,
        )
        # gdb's own complaints (no permission to attach, say) go to stderr.
        report.append("its threads (gdb):\n" + traced.stdout + traced.stderr)
    except (OSError, subprocess.TimeoutExpired) as e:
        report.append(f"no stacks: gdb {e}")
    return "\n".join(report)


def kill_session(pid):
    """Kills the binary and the servers and scripts it started, which share its session."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def report_and_kill(pid, report):
    """The watchdog's work: the hung binary's stacks into `report`, then the kill."""
    report.append(stacks_of(pid))
    kill_session(pid)


def main():
    limit = float(os.environ.get("NEURALFX_TEST_BINARY_LIMIT", "600"))
    lanes, times_file = int(sys.argv[1]), sys.argv[2]
    rest = sys.argv[4:]
    if "--" in rest:
        at = rest.index("--")
        binaries, doc_tests = rest[:at], rest[at + 1 :]
    else:
        binaries, doc_tests = rest, []
    jobs = [(name_of(b), [b]) for b in binaries]
    if doc_tests:
        jobs.append(("doc-tests", doc_tests))
    last = read_times(times_file)

    def expected(job):
        name = job[0]
        if name in last:
            return last[name]
        if name in KNOWN_SLOW:
            return 1000 - KNOWN_SLOW.index(name)
        return 0

    jobs.sort(key=expected, reverse=True)
    print_lock = threading.Lock()
    results = {}

    def run_once(command):
        """Exit status, output, resource usage and, if the watchdog killed it, the stacks."""
        with tempfile.TemporaryFile() as log:
            child = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            report = []
            watchdog = threading.Timer(limit, report_and_kill, (child.pid, report))
            watchdog.start()
            # wait4 gives the binary's own CPU time (and its children's that it waited for),
            # whatever the other lane does.
            _, wait_status, usage = os.wait4(child.pid, 0)
            watchdog.cancel()
            # A watchdog already at work finishes its report before the report is read.
            watchdog.join()
            child.returncode = os.waitstatus_to_exitcode(wait_status)
            # Whatever it started and left behind goes with it: a server would outlive the run.
            kill_session(child.pid)
            log.seek(0)
            output = log.read().decode(errors="replace")
        return child.returncode, output, usage, report[0] if report else None

    def run(job):
        name, command = job
        started = time.monotonic()
        status, output, usage, stacks = run_once(command)
        hung = int(stacks is not None)
        if hung:
            # Printed now, stacks and all; the binary runs once more, so that one hang (its
            # stacks are the report) does not also hide what the rest of its tests say.
            with print_lock:
                print(f"     Running {name} ({' '.join(command)})", flush=True)
                sys.stdout.write(output)
                print(f"     {name}: HUNG, killed after {limit:.0f} s "
                      "(NEURALFX_TEST_BINARY_LIMIT); its stacks:")
                print(stacks)
                print(f"     {name}: running it once more\n", flush=True)
            status, output, usage, stacks = run_once(command)
            if stacks is not None:
                hung += 1
                output += f"\nHUNG again, killed after {limit:.0f} s; its stacks:\n"
                output += stacks + "\n"
        took = time.monotonic() - started
        cpu = usage.ru_utime + usage.ru_stime
        with print_lock:
            print(f"     Running {name} ({' '.join(command)})", flush=True)
            sys.stdout.write(output)
            print(f"     {name}: exit {status} after {took:.1f} s ({cpu:.1f} s of CPU)\n",
                  flush=True)
        results[name] = (took, status, cpu, hung)

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        list(pool.map(run, jobs))

    print("seconds per test binary, wall and CPU (cargo test --release --test NAME runs one):")
    for name, (took, status, cpu, hung) in sorted(results.items(), key=lambda item: -item[1][0]):
        verdict = "" if status == 0 else "  FAILED"
        if hung:
            verdict += f"  HUNG {hung}x (stacks above)"
        print(f"{took:8.1f} {cpu:8.1f}  {name}{verdict}")
    # wait4 counts a binary and the children it waited for (the reference scripts' forkservers
    # included), not the servers it leaves to end with it (Triton, the SageMaker stand-in).
    print(f"{'':8} {sum(result[2] for result in results.values()):8.1f}  CPU in all "
          "(servers left running to the end not counted)")
    try:
        with open(times_file, "w") as f:
            for name, (took, *_) in results.items():
                f.write(f"{took:.1f} {name}\n")
    except OSError:
        pass
    failed = sorted(name for name, (_, status, *_) in results.items() if status != 0)
    if failed:
        print("failed: " + " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
