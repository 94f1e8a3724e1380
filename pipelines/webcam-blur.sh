#!/usr/bin/env bash
# A webcam in a window with its background blurred, live. The default model is MediaPipe's selfie
# segmentation, which keeps up with 30 fps on two cores; a slower model (model=u2netp) runs on its
# own thread (rembgfilter's asynchronous mode) and the video carries its newest mask.
#
# Usage: pipelines/webcam-blur.sh [/dev/videoN] [rembgfilter properties...]
# Example: pipelines/webcam-blur.sh /dev/video0 model=u2netp mask-interval=2 temporal-smoothing=0.6
# SOURCE and SINK override the camera and the window (the tests use a live videotestsrc).
set -euo pipefail
DEVICE="${1:-/dev/video0}"
[ $# -gt 0 ] && shift
SOURCE="${SOURCE:-v4l2src device=$DEVICE}"
SINK="${SINK:-autovideosink}"
# shellcheck source=pipelines/lib/model.sh
. "$(dirname "$0")/lib/model.sh"
prefetch_model selfie "$@"
say_model selfie "$@"
# shellcheck disable=SC2086
gst-launch-1.0 $SOURCE ! videoconvert ! videoscale ! video/x-raw,width=640,height=480 \
    ! rembgfilter model=selfie mode=blur temporal-smoothing=0.3 "$@" ! videoconvert ! $SINK
