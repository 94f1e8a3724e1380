#!/usr/bin/env bash
# pipelines/video-with-alpha.sh with the model on a Triton (KServe v2) server: only tensors
# travel, the resizing and compositing stay here; several frames are in flight at once.
#
# Usage: pipelines/remote-cutout.sh SERVER INPUT_VIDEO OUTPUT.mkv [rembgfilter properties...]
# Example: pipelines/remote-cutout.sh 10.0.0.5:8000 talk.mp4 talk-alpha.mkv model=u2net requests-in-flight=4
# The server must serve the model under its catalog name (u2netp unless model= says otherwise);
# the README shows a model repository for Triton's ONNX Runtime backend.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
SERVER="$1"
shift
exec "$(dirname "$0")/video-with-alpha.sh" "$1" "$2" backend=triton-http server="$SERVER" "${@:3}"
