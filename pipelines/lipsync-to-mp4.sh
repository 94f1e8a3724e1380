#!/usr/bin/env bash
# Renders a talking-head MP4 with lipsyncsrc, the speech muxed beside it as AAC.
#
# Usage: pipelines/lipsync-to-mp4.sh MODEL.onnx TEMPLATE_DIR FEATURES SPEECH.wav OUT.mp4 [MODE] [extra lipsyncsrc properties...]
#   MODE: ave (default), hubert or wenet. FEATURES: .npy or .bin (+ .bin.json), one row per video frame.
# Example:
#   pipelines/lipsync-to-mp4.sh unet_328.onnx dataset/May aud_ave.npy speech.wav out.mp4 ave start-frame=10
set -euo pipefail
if [ $# -lt 5 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
MODEL="$1" TEMPLATE="$2" FEATURES="$3" SPEECH="$4" OUTPUT="$5"
MODE="${6:-ave}"
shift $(($# < 6 ? $# : 6))

# x264enc (gst-plugins-ugly) where installed, else OpenH264 (gst-plugins-bad).
if gst-inspect-1.0 x264enc >/dev/null 2>&1; then
    VIDEO_ENCODER="x264enc speed-preset=faster"
else
    VIDEO_ENCODER="openh264enc"
fi

# -e: on Ctrl-C, finish the file properly instead of leaving it unreadable.
# shellcheck disable=SC2086
gst-launch-1.0 -e \
    lipsyncsrc model="$MODEL" template="$TEMPLATE" features="$FEATURES" mode="$MODE" "$@" \
        ! videoconvert ! video/x-raw,format=I420 ! $VIDEO_ENCODER ! h264parse ! queue ! mp4mux name=mux \
        ! filesink location="$OUTPUT" \
    filesrc location="$SPEECH" ! wavparse ! audioconvert ! audioresample ! avenc_aac ! aacparse ! queue ! mux.
echo "wrote $OUTPUT" >&2
