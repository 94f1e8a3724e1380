"""Sets every writable property of rembgfilter, lipsyncsrc and lipsync from PyGObject, as an application
does, reads each back, then runs a rembgfilter pipeline whose input-mean/input-std were set
from Python. Prints one line per property; exits non-zero on the first that does not take.

Run with the system Python (python3-gi); the plugin is found as gst-launch finds it.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GObject, Gst  # noqa: E402

# Values that mean something for properties whose type alone says too little.
CHOSEN = {
    "model": "u2netp",
    "input-mean": "0.485, 0.456, 0.406",
    "input-std": "<0.229, 0.224, 0.225>",
    "background-location": "/nonexistent/background.png",
    "server": "127.0.0.1:8001",
    "endpoint": "my-endpoint",
    "region": "eu-west-1",
    "endpoint-url": "http://127.0.0.1:9",
    "content-type": "image/png",
    "model-version": "2",
    "template": "/nonexistent/template",
    "features": "/nonexistent/features.npy",
    # Locations read back absolute (relative ones are taken from the working directory).
    "audio-location": "/nonexistent/speech.wav",
    "audio-encoder": "/nonexistent/encoder.onnx",
    "headers": "authorization: Bearer t0ken",
}

# Properties that read back without their secrets.
READ_BACK = {"headers": "authorization: ***"}


def value_for(spec):
    if spec.name in CHOSEN:
        return CHOSEN[spec.name]
    kind = spec.value_type
    if kind == GObject.TYPE_BOOLEAN:
        return not spec.default_value
    if kind in (GObject.TYPE_UINT, GObject.TYPE_INT, GObject.TYPE_UINT64, GObject.TYPE_INT64):
        return min(spec.maximum, max(spec.minimum, spec.default_value + 1))
    if kind in (GObject.TYPE_DOUBLE, GObject.TYPE_FLOAT):
        return min(spec.maximum, max(spec.minimum, (spec.minimum + spec.maximum) / 2))
    if kind.is_a(GObject.TYPE_ENUM):
        values = [v for v in spec.enum_class.__enum_values__.values() if v != spec.default_value]
        return values[-1]
    if kind == GObject.TYPE_STRING:
        return "x"
    raise TypeError(f"no test value for {spec.name} of type {kind.name}")


def main():
    Gst.init(None)
    for factory in ("rembgfilter", "lipsyncsrc", "lipsync"):
        element = Gst.ElementFactory.make(factory)
        if element is None:
            sys.exit(f"{factory}: not found (is the plugin installed?)")
        for spec in element.list_properties():
            if not spec.flags & GObject.ParamFlags.WRITABLE or spec.name in ("name", "parent"):
                continue
            value = value_for(spec)
            element.set_property(spec.name, value)
            back = element.get_property(spec.name)
            if back != READ_BACK.get(spec.name, value):
                sys.exit(f"{factory}.{spec.name}: set {value!r}, read back {back!r}")
            print(f"{factory}.{spec.name} = {back!r}")

    pipeline = Gst.parse_launch(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=64,height=48 "
        "! rembgfilter name=cut ! fakesink")
    cut = pipeline.get_by_name("cut")
    cut.set_property("input-mean", "0.5")
    cut.set_property("input-std", "0.25, 0.25, 0.25")
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(
        60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message is None or message.type != Gst.MessageType.EOS:
        sys.exit(f"the pipeline did not finish: {message.parse_error() if message else 'timeout'}")
    print("pipeline with input-mean/input-std set from Python: EOS")


if __name__ == "__main__":
    main()
