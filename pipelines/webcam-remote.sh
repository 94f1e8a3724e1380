#!/usr/bin/env bash
# pipelines/webcam-blur.sh with the model on a Triton (KServe v2) server: the camera's frames
# are segmented remotely on rembgfilter's model thread, so a slow network lags the mask, not
# the video.
#
# Usage: pipelines/webcam-remote.sh SERVER [/dev/videoN] [rembgfilter properties...]
# Example: pipelines/webcam-remote.sh 10.0.0.5:8000 /dev/video0 model=u2netp
# SOURCE and SINK override the camera and the window (the tests use a live videotestsrc).
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
SERVER="$1"
shift
DEVICE="${1:-/dev/video0}"
[ $# -gt 0 ] && shift
exec "$(dirname "$0")/webcam-blur.sh" "$DEVICE" backend=triton-http server="$SERVER" "$@"
