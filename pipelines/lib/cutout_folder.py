"""rembg p for GStreamer users: cuts out every picture in a folder into another, one process and
one rembgfilter (the model loaded once) for all of them. Run by pipelines/cutout-folder.sh.

Each file is decoded as Python rembg decodes it (pipelines/lib/still.sh: JPEG, BMP, GIF and TIFF through
gdkpixbufdec, turned upright by their orientation tag), cut out, and written as OUT_DIR/<name>.png.
Files that are not pictures are skipped with a message; with --watch the folder is watched for
new files (written completely: their size stays the same for a second) until interrupted.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 120 * Gst.SECOND


def pull(pipeline, sink):
    """The next sample of `sink`, or None and the reason as soon as the pipeline fails or ends
    (not after a timeout)."""
    bus = pipeline.get_bus()
    deadline = time.monotonic() + TIMEOUT / Gst.SECOND
    while time.monotonic() < deadline:
        sample = sink.emit("try-pull-sample", 50 * Gst.MSECOND)
        if sample is not None:
            return sample, None
        message = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if message is not None:
            if message.type == Gst.MessageType.ERROR:
                return None, message.parse_error()[0].message
            return None, "nothing decoded"
    return None, "no answer within two minutes"


def quoted(text):
    """A string as gst-launch syntax quotes it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def decode(path):
    """The picture at `path`, upright, as an RGBA sample (its own alpha, or opaque, so
    rembgfilter multiplies the mask by it as rembg does); None and a reason if it is not one."""
    source = subprocess.run(
        ["bash", "-c", '. "$0/still.sh"; still_source "$1"', HERE, path],
        capture_output=True, text=True, check=True).stdout.strip()
    description = source.replace('"$INPUT"', quoted(path))
    pipeline = Gst.parse_launch(
        f"{description} ! videoconvert ! video/x-raw,format=RGBA ! appsink name=sink sync=false")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sample, error = pull(pipeline, sink)
    pipeline.set_state(Gst.State.NULL)
    return sample, error


def write_png(sample, path):
    pipeline = Gst.parse_launch(
        f"appsrc name=src ! videoconvert ! pngenc ! filesink location={quoted(path + '.part')}")
    src = pipeline.get_by_name("src")
    src.set_property("caps", sample.get_caps())
    pipeline.set_state(Gst.State.PLAYING)
    src.emit("push-sample", sample)
    src.emit("end-of-stream")
    message = pipeline.get_bus().timed_pop_filtered(
        TIMEOUT, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message is None or message.type != Gst.MessageType.EOS:
        raise RuntimeError(f"cannot write {path}")
    os.replace(path + ".part", path)


class Cutter:
    """One pipeline for the whole run: frames in through appsrc, cutouts out through appsink."""

    def __init__(self, properties):
        self.pipeline = Gst.parse_launch(
            "appsrc name=src format=time ! videoconvert ! rembgfilter name=cut clear-transparent=true "
            "foreground-estimation=multilevel "
            "! videoconvert ! video/x-raw,format=RGBA ! appsink name=sink sync=false")
        cut = self.pipeline.get_by_name("cut")
        for assignment in properties:
            name, _, value = assignment.partition("=")
            if not Gst.util_set_object_arg(cut, name, value) and cut.find_property(name) is None:
                sys.exit(f"rembgfilter has no property '{name}'")
        self.src = self.pipeline.get_by_name("src")
        self.sink = self.pipeline.get_by_name("sink")
        self.frames = 0
        # A first-use model download reports its progress as it happens, on the thread that
        # starts the pipeline.
        bus = self.pipeline.get_bus()
        bus.enable_sync_message_emission()
        bus.connect("sync-message::progress", self.print_progress)
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self.fail()

    @staticmethod
    def print_progress(_bus, message):
        _kind, code, text = message.parse_progress()
        print(f"Progress: ({code}) {text}", flush=True)

    def fail(self):
        message = self.pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
        reason = message.parse_error()[0].message if message else "the pipeline did not start"
        self.pipeline.set_state(Gst.State.NULL)
        sys.exit(f"rembgfilter: {reason}")

    def cut(self, sample):
        buffer = sample.get_buffer().copy()
        buffer.pts = self.frames * Gst.SECOND
        buffer.duration = Gst.SECOND
        self.frames += 1
        self.src.set_property("caps", sample.get_caps())
        self.src.emit("push-buffer", buffer)
        out, error = pull(self.pipeline, self.sink)
        if out is None:
            self.pipeline.set_state(Gst.State.NULL)
            sys.exit(f"rembgfilter: {error}")
        return out

    def close(self):
        self.src.emit("end-of-stream")
        self.pipeline.set_state(Gst.State.NULL)


def output_name(name, used):
    stem = os.path.splitext(name)[0] or name
    candidate = stem + ".png"
    if candidate in used:
        candidate = name + ".png"
    used.add(candidate)
    return candidate


def process(cutter, in_dir, out_dir, names, used, done, total_hint):
    for name in names:
        path = os.path.join(in_dir, name)
        done.add(name)
        started = time.monotonic()
        sample, error = decode(path)
        if sample is None:
            print(f"skipping {name}: not a picture GStreamer can decode ({error})", flush=True)
            continue
        out = os.path.join(out_dir, output_name(name, used))
        write_png(cutter.cut(sample), out)
        count = len(done)
        total = f"/{total_hint}" if total_hint else ""
        print(f"[{count}{total}] {name} -> {out} ({time.monotonic() - started:.2f} s)", flush=True)


def files_in(folder):
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_file())


def main():
    parser = argparse.ArgumentParser(prog="cutout-folder.sh", description=__doc__.split("\n")[0])
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    parser.add_argument("properties", nargs="*", help="rembgfilter properties, key=value")
    parser.add_argument("--watch", action="store_true",
                        help="keep processing files as they arrive, until interrupted")
    # rembg's alpha matting options, with rembg's meaning.
    parser.add_argument("-a", "--alpha-matting", action="store_true", help="rembg's alpha matting")
    parser.add_argument("-af", "--alpha-matting-foreground-threshold", type=int,
                        help="trimap foreground threshold (rembg's default 240)")
    parser.add_argument("-ab", "--alpha-matting-background-threshold", type=int,
                        help="trimap background threshold (rembg's default 10)")
    parser.add_argument("-ae", "--alpha-matting-erode-size", type=int,
                        help="trimap erode size (rembg's default 10)")
    args = parser.parse_intermixed_args()
    if args.alpha_matting:
        args.properties.append("alpha-matting=true")
    for option in ("foreground_threshold", "background_threshold", "erode_size"):
        value = getattr(args, "alpha_matting_" + option)
        if value is not None:
            args.properties.append(f"alpha-matting-{option.replace('_', '-')}={value}")
    if not os.path.isdir(args.in_dir):
        sys.exit(f"{args.in_dir}: not a folder")
    os.makedirs(args.out_dir, exist_ok=True)
    Gst.init(None)
    cutter = Cutter(args.properties)
    used, done = set(), set()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        names = files_in(args.in_dir)
        print(f"{len(names)} files in {args.in_dir}", flush=True)
        process(cutter, args.in_dir, args.out_dir, names, used, done, len(names))
        if not args.watch:
            return
        print(f"watching {args.in_dir} for new files (Ctrl-C to stop)", flush=True)
        sizes = {}
        while True:
            time.sleep(0.5)
            ready = []
            for entry in os.scandir(args.in_dir):
                if not entry.is_file() or entry.name in done:
                    continue
                size = entry.stat().st_size
                # Written completely: the same size a second look later.
                if sizes.get(entry.name) == size and size > 0:
                    ready.append(entry.name)
                sizes[entry.name] = size
            process(cutter, args.in_dir, args.out_dir, sorted(ready), used, done, None)
    except KeyboardInterrupt:
        pass
    finally:
        cutter.close()


if __name__ == "__main__":
    main()
