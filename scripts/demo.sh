#!/usr/bin/env bash
# Quick start 1: set up neuralfx and cut out the astronaut photo into a transparent PNG.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
source "$REPO/scripts/env.sh"
mkdir -p "$REPO/out"
OUTPUT="$REPO/out/astronaut-cutout.png"
# A new environment with nothing set proves the installed plugin finds ONNX Runtime by itself.
env -i HOME="$HOME" PATH=/usr/local/bin:/usr/bin:/bin gst-launch-1.0 -q \
    filesrc location="$NEURALFX_SAMPLES/astronaut.png" ! decodebin ! videoconvert \
    ! rembgfilter model=u2netp ! videoconvert ! pngenc ! filesink location="$OUTPUT"
echo "wrote $OUTPUT (RGBA, background transparent)"
