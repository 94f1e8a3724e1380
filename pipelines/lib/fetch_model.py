"""Downloads a catalog model rembgfilter does not have yet, printing its progress as it goes.

Usage: fetch_model.py MODEL
The scripts run it before their own pipeline: gst-launch-1.0 reads its bus only once the state
change that downloads is over, so it could not show the progress while it happens. Here a bus
sync handler prints rembgfilter's `progress` messages as they are posted.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def main():
    model = sys.argv[1]
    Gst.init(None)
    pipeline = Gst.parse_launch(
        "videotestsrc num-buffers=1 ! video/x-raw,format=RGB,width=32,height=24 "
        "! rembgfilter name=cut ! fakesink")
    pipeline.get_by_name("cut").set_property("model", model)
    bus = pipeline.get_bus()
    bus.enable_sync_message_emission()

    def show(_bus, message):
        _kind, code, text = message.parse_progress()
        print(f"Progress: ({code}) {text}", file=sys.stderr, flush=True)

    bus.connect("sync-message::progress", show)
    pipeline.set_state(Gst.State.PLAYING)
    message = bus.timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        # The script's own pipeline reports it again, with the rest of its context.
        sys.exit(1)


if __name__ == "__main__":
    main()
