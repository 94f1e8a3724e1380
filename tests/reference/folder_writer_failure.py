"""cutout_folder.py (its folder is the first argument) with a writer that raises on one file of
five: the file is named as failed, the others are written, and the run ends (a writer thread
that died would leave the main one waiting forever to hand it the next cutout). Then trouble
outside one file's writing (stdout closed, say): the run stops and raises it, in bounded time.
Prints "ok"."""
import sys
import tempfile
import threading

sys.path.insert(0, sys.argv[1])
import cutout_folder  # noqa: E402

written = []


def write_png(cutout, out, encoder):
    if out.endswith("c.png"):
        raise TypeError("a writer's own trouble")
    written.append(out)
    return None


class Cutter:
    def cut(self, sample):
        return sample


def run_in_thread(run, names):
    """What Run.process raised, or None; fails if it is still running after 30 s."""
    raised = []

    def process():
        try:
            run.process(names, len(names))
        except BaseException as error:  # noqa: BLE001
            raised.append(error)

    worker = threading.Thread(target=process, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "the run never ended"
    return raised[0] if raised else None


cutout_folder.write_png = write_png
cutout_folder.Run.decode_one = staticmethod(lambda path: ("picture", None))
with tempfile.TemporaryDirectory() as folder:
    run = cutout_folder.Run(Cutter(), folder, folder)
    raised = run_in_thread(run, [f"{letter}.png" for letter in "abcde"])
    assert raised is None, raised
    assert run.failed == 1, run.failed
    assert sorted(path.rsplit("/", 1)[1] for path in written) == ["a.png", "b.png", "d.png",
                                                                  "e.png"], written


real_output_name = cutout_folder.output_name


def output_name(name, used):
    if name == "d.png":
        raise BrokenPipeError("stdout closed")
    return real_output_name(name, used)


cutout_folder.output_name = output_name
written.clear()
with tempfile.TemporaryDirectory() as folder:
    raised = run_in_thread(cutout_folder.Run(Cutter(), folder, folder),
                           [f"{letter}.png" for letter in "abcdefgh"])
    assert isinstance(raised, BrokenPipeError), raised
    assert [path.rsplit("/", 1)[1] for path in written] == ["a.png", "b.png"], written
print("ok")
