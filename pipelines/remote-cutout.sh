#!/usr/bin/env bash
# pipelines/video-with-alpha.sh with the model on a Triton (KServe v2) server: only tensors
# travel, the resizing and compositing stay here; several frames are in flight at once.
#
# Usage: pipelines/remote-cutout.sh SERVER INPUT_VIDEO OUTPUT.mkv [rembgfilter properties...]
# SERVER is grpc://host:8001 (Triton's gRPC port, backend=triton) or host:8000 / http(s)://...
# (its HTTP port, backend=triton-http).
# Example: pipelines/remote-cutout.sh grpc://10.0.0.5:8001 talk.mp4 talk-alpha.mkv model=u2net requests-in-flight=4
# The server must serve the model under its catalog name (u2netp unless model= says otherwise);
# the README shows a model repository for Triton's ONNX Runtime backend. For a SageMaker endpoint
# give any SERVER and backend=sagemaker endpoint=NAME region=REGION after the files.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,11p' "$0" >&2
    exit 2
fi
SERVER="$1"
shift
case "$SERVER" in
    grpc://* | grpcs://*) BACKEND=triton ;;
    *) BACKEND=triton-http ;;
esac
exec "$(dirname "$0")/video-with-alpha.sh" "$1" "$2" backend="$BACKEND" server="$SERVER" "${@:3}"
