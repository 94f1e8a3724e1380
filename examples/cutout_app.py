#!/usr/bin/python3
"""A small PyGObject application around rembgfilter: cuts out one picture, sets properties from
Python, reads what ran (`active-backend`) and the `stats` structure, and turns an error on the
bus into a message and exit status 1.

Run it with the system Python, which has GStreamer's bindings (Debian/Ubuntu: python3-gi, that
scripts/setup.sh installs); a pyenv or virtualenv Python has no `gi` module:

    /usr/bin/python3 examples/cutout_app.py photo.jpg cutout.png [MODEL]

MODEL is a catalog name (u2netp, the default; selfie; isnet-general-use, ...) or an .onnx file.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def cut_out(picture: str, output: str, model: str) -> int:
    pipeline = Gst.parse_launch(
        "filesrc name=source ! decodebin ! videoconvert ! rembgfilter name=cutout "
        "! videoconvert ! pngenc ! filesink name=sink"
    )
    pipeline.get_by_name("source").set_property("location", picture)
    # Written under another name and renamed at the end: a failure leaves no broken file.
    partial = output + ".part"
    pipeline.get_by_name("sink").set_property("location", partial)
    cutout = pipeline.get_by_name("cutout")
    cutout.set_property("model", model)
    # Enumerations take their nicks, as on the gst-launch command line.
    cutout.set_property("foreground-estimation", "multilevel")
    cutout.set_property("post-process-mask", True)

    loop = GLib.MainLoop()
    outcome = {"status": 0, "runs_on": ""}

    def on_message(_bus, message):
        kind = message.type
        if kind == Gst.MessageType.INFO:
            print("info:", message.parse_info()[0].message)
        elif kind == Gst.MessageType.WARNING:
            print("warning:", message.parse_warning()[0].message, file=sys.stderr)
        elif kind == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            print(f"error from {message.src.get_name()}: {error.message}", file=sys.stderr)
            if debug:
                print(f"  ({debug})", file=sys.stderr)
            outcome["status"] = 1
            loop.quit()
        elif kind == Gst.MessageType.EOS:
            loop.quit()
        elif kind == Gst.MessageType.STATE_CHANGED and message.src == pipeline:
            if message.parse_state_changed()[1] == Gst.State.PLAYING:
                # Set at start, emptied at stop: read it while the pipeline runs.
                outcome["runs_on"] = cutout.get_property("active-backend")

    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        # The element posted why on the bus; the loop reads it.
        pass
    loop.run()
    stats = cutout.get_property("stats")
    pipeline.set_state(Gst.State.NULL)
    bus.remove_signal_watch()

    if outcome["status"] != 0:
        if os.path.exists(partial):
            os.remove(partial)
        return outcome["status"]
    os.replace(partial, output)
    print(f"wrote {output}")
    print(f"model {model} ran on {outcome['runs_on']}")
    # A Gst.Structure: each field by name, with its type.
    print(
        "stats: {} frame(s), {} model run(s), {:.1f} ms in the model, {:.1f} ms estimating "
        "edge colours".format(
            stats.get_value("frames"),
            stats.get_value("model-runs"),
            stats.get_value("model-time") / 1e6,
            stats.get_value("foreground-time") / 1e6,
        )
    )
    return 0


def main() -> int:
    if len(sys.argv) not in (3, 4):
        print(__doc__.strip().split("\n\n")[2], file=sys.stderr)
        return 2
    Gst.init(None)
    model = sys.argv[3] if len(sys.argv) == 4 else "u2netp"
    return cut_out(sys.argv[1], sys.argv[2], model)


if __name__ == "__main__":
    sys.exit(main())
