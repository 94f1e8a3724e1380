#!/usr/bin/env bash
# Regenerates the README's picture of the edge options: the astronaut (a sample photo) cut out by
# u2netp and composited over a dark blue, her hair enlarged, with the straight colour, with
# foreground-estimation=multilevel and with alpha-matting=true, side by side.
#
# Usage: scripts/edges-picture.sh [OUTPUT.png]   (default docs/edges.png)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTPUT="${1:-$REPO/docs/edges.png}"
source "$REPO/scripts/env.sh"
# Set up first on a machine that has never run setup.sh.
if ! gst-inspect-1.0 rembgfilter >/dev/null 2>&1 || [ ! -f "$NEURALFX_SAMPLES/astronaut.png" ]; then
    "$REPO/scripts/setup.sh"
    source "$REPO/scripts/env.sh"
fi
mkdir -p "$(dirname "$OUTPUT")"
PHOTO="$NEURALFX_SAMPLES/astronaut.png"
# The hair: a 180x135 crop of the 512x512 photo, shown twice as large.
CROP="videocrop left=140 top=5 right=192 bottom=372 ! videoscale method=nearest-neighbour ! video/x-raw,width=360,height=270"
panel() { # NAME PROPERTIES LABEL
    echo "filesrc location=\"$PHOTO\" ! pngdec ! videoconvert \
        ! rembgfilter mode=composite background-color=0xff102030 $2 ! videoconvert ! $CROP \
        ! textoverlay text=\"$3\" valignment=top halignment=left shaded-background=true font-desc=\"Sans 12\" \
        ! videoconvert ! imagefreeze num-buffers=1 ! mix.sink_$1"
}
echo "making $OUTPUT" >&2
eval gst-launch-1.0 -q compositor name=mix \
    sink_0::xpos=0 sink_1::xpos=364 sink_2::xpos=728 background=black \
    ! video/x-raw,width=1088,height=270 ! videoconvert ! pngenc ! filesink location="\"$OUTPUT\"" \
    "$(panel 0 "" "straight colour")" \
    "$(panel 1 "foreground-estimation=multilevel" "foreground-estimation=multilevel")" \
    "$(panel 2 "alpha-matting=true" "alpha-matting=true")"
echo "wrote $OUTPUT" >&2
