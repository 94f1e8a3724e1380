#!/usr/bin/env bash
# A webcam in a window with its background blurred, live. A slow model keeps up by running on
# every Nth frame (mask-interval) with smoothing between.
#
# Usage: pipelines/webcam-blur.sh [/dev/videoN] [rembgfilter properties...]
# Example: pipelines/webcam-blur.sh /dev/video0 mask-interval=4 temporal-smoothing=0.6
# SOURCE and SINK override the camera and the window (the tests use a live videotestsrc).
set -euo pipefail
DEVICE="${1:-/dev/video0}"
[ $# -gt 0 ] && shift
SOURCE="${SOURCE:-v4l2src device=$DEVICE}"
SINK="${SINK:-autovideosink}"
# shellcheck disable=SC2086
gst-launch-1.0 $SOURCE ! videoconvert ! videoscale ! video/x-raw,width=640,height=480 \
    ! rembgfilter mode=blur mask-interval=4 temporal-smoothing=0.5 "$@" ! videoconvert ! $SINK
