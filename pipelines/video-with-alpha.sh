#!/usr/bin/env bash
# A video file to a Matroska file with transparency: lossless FFV1 keeps the alpha channel, and
# GStreamer (avdec_ffv1), FFmpeg and most editors read it back. The sound is kept (passed through,
# or re-encoded to FLAC when Matroska cannot carry it).
#
# Usage: pipelines/video-with-alpha.sh INPUT_VIDEO OUTPUT.mkv [rembgfilter properties...]
# Edges get their estimated foreground colour (foreground-estimation=multilevel; pass
# foreground-estimation=none to keep the frame's own colour). rembg's -a/-af/-ab/-ae work too
# (seconds a frame).
# Example: pipelines/video-with-alpha.sh talk.mp4 talk-alpha.mkv temporal-smoothing=0.5
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,10p' "$0" >&2
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
# shellcheck source=pipelines/lib/audio.sh
. "$(dirname "$0")/lib/audio.sh"
audio_branch "$INPUT" decoder mux mkv
# gst_launch: gst-launch-1.0, ended if it waits after printing an error (see the file).
# shellcheck source=pipelines/lib/launch.sh
. "$(dirname "$0")/lib/launch.sh"
# shellcheck disable=SC2086
gst_launch -e filesrc location="$INPUT" ! decodebin name=decoder ${DECODER_CAPS:+caps="$DECODER_CAPS"} \
    decoder. ! video/x-raw ! videoconvert ! rembgfilter overlap=true foreground-estimation=multilevel "$@" \
    ! progressreport update-freq=5 ! videoconvert ! video/x-raw,format=BGRA ! avenc_ffv1 \
    ! matroskamux name=mux ! filesink location="$OUTPUT" $AUDIO_BRANCH
echo "wrote $OUTPUT" >&2
