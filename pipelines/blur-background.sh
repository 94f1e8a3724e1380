#!/usr/bin/env bash
# A video file to an MP4 whose background is blurred, the person kept sharp (the video-call look).
# The sound is kept (passed through, or re-encoded to AAC when MP4 cannot carry it).
#
# Usage: pipelines/blur-background.sh INPUT_VIDEO OUTPUT.mp4 [rembgfilter properties...]
# Edges get their estimated foreground colour (foreground-estimation=multilevel; pass
# foreground-estimation=none to skip it). rembg's -a/-af/-ab/-ae work too (seconds a frame).
# Example: pipelines/blur-background.sh talk.mp4 talk-blurred.mp4 blur-radius=24 temporal-smoothing=0.5
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
INPUT="$1" OUTPUT="$2"
shift 2
# shellcheck source=pipelines/lib/rembg_options.sh
. "$(dirname "$0")/lib/rembg_options.sh"
rembg_options "$@"
set -- "${PROPERTIES[@]}"
# A model not installed yet is downloaded first, its progress shown as it goes.
# shellcheck source=pipelines/lib/model.sh
. "$(dirname "$0")/lib/model.sh"
prefetch_model u2netp "$@"
say_model u2netp "$@"
if gst-inspect-1.0 x264enc >/dev/null 2>&1; then
    VIDEO_ENCODER="x264enc speed-preset=faster"
else
    VIDEO_ENCODER="openh264enc"
fi
# shellcheck source=pipelines/lib/audio.sh
. "$(dirname "$0")/lib/audio.sh"
audio_branch "$INPUT" decoder mux mp4
# gst_launch: gst-launch-1.0, ended if it waits after printing an error (see the file).
# shellcheck source=pipelines/lib/launch.sh
. "$(dirname "$0")/lib/launch.sh"
# shellcheck disable=SC2086
gst_launch -e filesrc location="$INPUT" ! decodebin name=decoder ${DECODER_CAPS:+caps="$DECODER_CAPS"} \
    decoder. ! video/x-raw ! videoconvert ! rembgfilter overlap=true mode=blur foreground-estimation=multilevel "$@" \
    ! progressreport update-freq=5 ! videoconvert ! video/x-raw,format=I420 ! $VIDEO_ENCODER ! h264parse \
    ! mp4mux name=mux ! filesink location="$OUTPUT" $AUDIO_BRANCH
echo "wrote $OUTPUT" >&2
