#!/usr/bin/env bash
# Every picture in a folder to a transparent PNG in another (what `rembg p` does): one process,
# the model loaded once; files that are not pictures are skipped with a message; progress is
# printed per file. --watch keeps processing files as they arrive (like `rembg p -w`).
#
# Usage: pipelines/cutout-folder.sh [--watch] IN_DIR OUT_DIR [rembgfilter properties...] [-a [-af N] [-ab N] [-ae N]]
# Edges get their estimated foreground colour (foreground-estimation=multilevel, as rembg p -dc;
# pass foreground-estimation=none for the photo's own colour). rembg's alpha matting options
# (-a, -af, -ab, -ae) mean what they mean to rembg.
# Example: pipelines/cutout-folder.sh photos/ cutouts/ model=isnet-general-use
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
# PyGObject (python3-gi) drives the pipeline; the system Python has it on Debian/Ubuntu.
PYTHON=python3
python3 -c 'import gi' 2>/dev/null || PYTHON=/usr/bin/python3
exec "$PYTHON" "$(dirname "$0")/lib/cutout_folder.py" "$@"
