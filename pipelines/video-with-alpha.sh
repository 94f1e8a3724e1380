#!/usr/bin/env bash
# A video file to a Matroska file with transparency: lossless FFV1 keeps the alpha channel, and
# GStreamer (avdec_ffv1), FFmpeg and most editors read it back.
#
# Usage: pipelines/video-with-alpha.sh INPUT_VIDEO OUTPUT.mkv [rembgfilter properties...]
# Example: pipelines/video-with-alpha.sh talk.mp4 talk-alpha.mkv temporal-smoothing=0.5
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,6p' "$0" >&2
    exit 2
fi
INPUT="$1" OUTPUT="$2"
shift 2
gst-launch-1.0 -e filesrc location="$INPUT" ! decodebin ! videoconvert ! rembgfilter overlap=true "$@" \
    ! progressreport update-freq=5 ! videoconvert ! video/x-raw,format=BGRA ! avenc_ffv1 \
    ! matroskamux ! filesink location="$OUTPUT"
echo "wrote $OUTPUT" >&2
