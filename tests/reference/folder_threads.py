"""Imports pipelines/lib/cutout_folder.py (its folder is the first argument) and has four threads
wait for the end of a pipeline with its `pull` at the same moment, switching threads as often as
Python can: PyGObject makes the Gst types these threads meet on first use, and two threads
making one at once leave them with two classes of one name ("Expected a Gst.MessageType, but
got MessageType"). Prints "ok", or the first error and exits 1."""
import sys
import threading

sys.setswitchinterval(1e-6)
sys.path.insert(0, sys.argv[1])
import cutout_folder  # noqa: E402
from cutout_folder import Gst  # noqa: E402

Gst.init(None)
errors = []
start = threading.Barrier(4)


def wait_for_the_end():
    try:
        start.wait()
        pipeline = Gst.parse_launch("fakesrc num-buffers=0 ! appsink name=sink")
        pipeline.set_state(Gst.State.PLAYING)
        sample, reason = cutout_folder.pull(pipeline, pipeline.get_by_name("sink"))
        pipeline.set_state(Gst.State.NULL)
        assert sample is None and reason == "nothing decoded", reason
    except Exception as e:  # noqa: BLE001  (any error of a thread is the answer)
        errors.append(repr(e))


threads = [threading.Thread(target=wait_for_the_end) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors[0] if errors else "ok")
sys.exit(1 if errors else 0)
