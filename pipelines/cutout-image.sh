#!/usr/bin/env bash
# A still image to a transparent PNG (what `rembg i` does), with any rembgfilter options.
#
# Usage: pipelines/cutout-image.sh INPUT_IMAGE OUTPUT.png [rembgfilter properties...] [-a [-af N] [-ab N] [-ae N]]
# Fully transparent pixels are written black (clear-transparent=true; pass =false to keep them);
# edges get their estimated foreground colour (foreground-estimation=multilevel, as rembg -dc;
# pass foreground-estimation=none for the photo's own colour). rembg's alpha matting options
# (-a, -af, -ab, -ae) mean what they mean to rembg.
# Example: pipelines/cutout-image.sh photo.jpg cutout.png model=u2net -a -ae 15
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
INPUT="$1" OUTPUT="$2"
shift 2
if [ ! -f "$INPUT" ] || [ ! -r "$INPUT" ]; then
    echo "cutout-image.sh: $INPUT: no such file, or not readable" >&2
    exit 1
fi
# shellcheck source=pipelines/lib/rembg_options.sh
. "$(dirname "$0")/lib/rembg_options.sh"
rembg_options "$@"
set -- "${PROPERTIES[@]}"
# A model not installed yet is downloaded first, its progress shown as it goes.
# shellcheck source=pipelines/lib/model.sh
. "$(dirname "$0")/lib/model.sh"
prefetch_model u2netp "$@"
# Decoded as Python rembg decodes it (Pillow's colours, EXIF orientation applied).
# shellcheck source=pipelines/lib/still.sh
. "$(dirname "$0")/lib/still.sh"
SOURCE=$(still_source "$INPUT")
# FFmpeg's PNG encoder with per-row filters (as Pillow's, so rembg's): 22-50% fewer bytes than
# pngenc at about the same speed (measured: pipelines/lib/cutout_folder.py, png_encoder).
ENCODER=pngenc
if gst-inspect-1.0 --exists avenc_png; then ENCODER="avenc_png pred=mixed"; fi
# Written under a temporary name and renamed once complete: a failure leaves no empty file.
PARTIAL="$OUTPUT.part"
trap 'rm -f "$PARTIAL"' EXIT
# gst_launch: gst-launch-1.0, ended if it waits after printing an error (see the file).
# shellcheck source=pipelines/lib/launch.sh
. "$(dirname "$0")/lib/launch.sh"
if ! LOG=$(eval gst_launch -q "$SOURCE" ! videoconvert \
    ! rembgfilter clear-transparent=true foreground-estimation=multilevel '"$@"' ! videoconvert ! $ENCODER \
    ! filesink location='"$PARTIAL"' 2>&1); then
    # One line: the first error's message (gst-launch repeats it with its debug details).
    MESSAGE=$(printf '%s\n' "$LOG" | sed -nE 's/^ERROR: from element [^ ]*: (.*)$/\1/p' | head -n 1)
    echo "cutout-image.sh: $INPUT: ${MESSAGE:-$(printf '%s\n' "$LOG" | tail -n 1)}" >&2
    exit 1
fi
mv "$PARTIAL" "$OUTPUT"
# Warnings of a run that succeeded still reach the user.
if [ -n "$LOG" ]; then printf '%s\n' "$LOG" >&2; fi
echo "wrote $OUTPUT" >&2
