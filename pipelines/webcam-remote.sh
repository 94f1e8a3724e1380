#!/usr/bin/env bash
# pipelines/webcam-blur.sh with the model on a Triton (KServe v2) server: the camera's frames
# are segmented remotely on rembgfilter's model thread, so a slow network lags the mask, not
# the video.
#
# Usage: pipelines/webcam-remote.sh SERVER [/dev/videoN] [rembgfilter properties...]
# SERVER is grpc://host:8001 (Triton's gRPC port) or host:8000 / http(s)://... (its HTTP port).
# Example: pipelines/webcam-remote.sh grpc://10.0.0.5:8001 /dev/video0 model=u2netp
# asynchronous=false gives every frame its own mask (requests-in-flight at once, more latency).
# SOURCE and SINK override the camera and the window (the tests use a live videotestsrc).
set -euo pipefail
if [ $# -lt 1 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
SERVER="$1"
shift
DEVICE="${1:-/dev/video0}"
[ $# -gt 0 ] && shift
case "$SERVER" in
    grpc://* | grpcs://*) BACKEND=triton ;;
    *) BACKEND=triton-http ;;
esac
exec "$(dirname "$0")/webcam-blur.sh" "$DEVICE" backend="$BACKEND" server="$SERVER" "$@"
