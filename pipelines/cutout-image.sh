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
eval gst-launch-1.0 -q "$SOURCE" ! videoconvert \
    ! rembgfilter clear-transparent=true foreground-estimation=multilevel '"$@"' ! videoconvert ! pngenc ! filesink location='"$OUTPUT"'
echo "wrote $OUTPUT" >&2
