#!/usr/bin/env bash
# Renders a talking-head MP4 with lipsyncsrc, the speech muxed beside it as AAC.
#
# Usage: pipelines/lipsync-to-mp4.sh MODEL.onnx TEMPLATE_DIR FEATURES SPEECH.wav OUT.mp4 [MODE] [key=value...]
#        pipelines/lipsync-to-mp4.sh MODEL.onnx TEMPLATE_DIR SPEECH OUT.mp4 audio-encoder=ENCODER.onnx [key=value...]
#   MODE: ave (default), hubert or wenet, anywhere after the files, as may be any lipsyncsrc
#   property (key=value). FEATURES: .npy or .bin (+ .bin.json), one row per video frame.
#   The second form computes the ave features from the speech itself (any sound file GStreamer
#   decodes) with SyncTalk_2D's audio encoder (models/export_audio_encoder.py): no Python.
# Examples:
#   pipelines/lipsync-to-mp4.sh unet_328.onnx dataset/May aud_ave.npy speech.wav out.mp4 start-frame=10 ave
#   pipelines/lipsync-to-mp4.sh unet_328.onnx dataset/May speech.mp3 out.mp4 audio-encoder=ave_encoder.onnx
set -euo pipefail
if [ $# -lt 4 ]; then
    sed -n '2,14p' "$0" >&2
    exit 2
fi
case "$3" in
    *.npy | *.bin)
        if [ $# -lt 5 ]; then
            sed -n '2,14p' "$0" >&2
            exit 2
        fi
        MODEL="$1" TEMPLATE="$2" FEATURES="$3" SPEECH="$4" OUTPUT="$5"
        shift 5
        ;;
    *)
        MODEL="$1" TEMPLATE="$2" FEATURES="" SPEECH="$3" OUTPUT="$4"
        shift 4
        ;;
esac
MODE=ave
PROPERTIES=()
for argument in "$@"; do
    case "$argument" in
        ave | hubert | wenet) MODE="$argument" ;;
        mode=*) MODE="${argument#mode=}" ;;
        *=*) PROPERTIES+=("$argument") ;;
        *)
            echo "unexpected argument '$argument': expected MODE (ave, hubert, wenet) or a lipsyncsrc property as key=value" >&2
            exit 2
            ;;
    esac
done

# The features' frame count, from the .npy header or the .bin's JSON; empty when unreadable or
# computed from the speech (which then has the speech's length by construction).
feature_frames() {
    case "$FEATURES" in
        *.npy) head -c 4096 "$FEATURES" | tr -d '\0' | grep -aoE "'shape': *\(([0-9]+)" | grep -oE '[0-9]+$' ;;
        *.bin) grep -oE '"num_frames": *[0-9]+' "$FEATURES.json" 2>/dev/null | grep -oE '[0-9]+$' ;;
    esac
}

# Warn when the speech and the video would not end together (more than one frame apart).
# Nanoseconds are printed with %.0f: mawk (Debian's awk) caps %d at 2^31 - 1, 2.147 s.
FPS=25
[ "$MODE" = wenet ] && FPS=20
FRAMES=$(feature_frames || true)
SPEECH_NS=$(gst-discoverer-1.0 "$SPEECH" 2>/dev/null | sed -nE 's/^ *Duration: ([0-9]+):([0-9]+):([0-9.]+).*/\1 \2 \3/p' \
    | awk '{ printf "%.0f", ($1 * 3600 + $2 * 60 + $3) * 1e9 }' || true)
if [ -n "$FRAMES" ] && [ -n "$SPEECH_NS" ]; then
    VIDEO_NS=$((FRAMES * 1000000000 / FPS))
    FRAME_NS=$((1000000000 / FPS))
    DIFFERENCE=$((VIDEO_NS - SPEECH_NS))
    if [ "${DIFFERENCE#-}" -gt "$FRAME_NS" ]; then
        if [ "$DIFFERENCE" -gt 0 ]; then LONGER="the video (the features)"; else LONGER="the speech"; fi
        printf 'warning: the features make %d frames (%.2f s at %d fps) and the speech lasts %.2f s: %s is longer by %.2f s\n' \
            "$FRAMES" "$(awk "BEGIN { print $VIDEO_NS / 1e9 }")" "$FPS" "$(awk "BEGIN { print $SPEECH_NS / 1e9 }")" \
            "$LONGER" "$(awk "BEGIN { print ${DIFFERENCE#-} / 1e9 }")" >&2
    fi
fi

# x264enc (gst-plugins-ugly) where installed, else OpenH264 (gst-plugins-bad).
if gst-inspect-1.0 x264enc >/dev/null 2>&1; then
    VIDEO_ENCODER="x264enc speed-preset=faster"
else
    VIDEO_ENCODER="openh264enc"
fi

# -e: on Ctrl-C, finish the file properly instead of leaving it unreadable. progressreport prints
# the position every 5 s.
if [ -n "$FEATURES" ]; then
    SOURCE_FEATURES=(features="$FEATURES")
else
    SOURCE_FEATURES=(audio-location="$SPEECH")
fi
# gst_launch: gst-launch-1.0, ended if it waits after printing an error (see the file).
# shellcheck source=pipelines/lib/launch.sh
. "$(dirname "$0")/lib/launch.sh"
# shellcheck disable=SC2086
gst_launch -e \
    lipsyncsrc model="$MODEL" template="$TEMPLATE" "${SOURCE_FEATURES[@]}" mode="$MODE" "${PROPERTIES[@]}" \
        ! progressreport update-freq=5 ! videoconvert ! video/x-raw,format=I420 ! $VIDEO_ENCODER ! h264parse \
        ! queue ! mp4mux name=mux ! filesink location="$OUTPUT" \
    filesrc location="$SPEECH" ! decodebin ! audioconvert ! audioresample ! avenc_aac ! aacparse ! queue ! mux.
echo "wrote $OUTPUT" >&2
