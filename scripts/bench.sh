#!/usr/bin/env bash
# Benchmarks that print ratios measured in one run:
#   rembgfilter: pipeline vs bare u2netp inference vs Python rembg, at 640x480 and 1080p
#   lipsyncsrc:  element vs bare U-Net inference vs the Python reference loop, at 720p and 1080p
#   rembgfilter_video: flicker with and without temporal smoothing; live share of frames and latency
#   soak: resident memory over long runs and many start/stop cycles of each element
#   remote: rembgfilter on one and two Triton servers over gRPC and HTTP (1, 2, 4, 8 requests in flight) against in-process
#   lipsync: the live lipsync element: frames per second not live, and live with the audio-to-frame latency
#   foreground: foreground colour estimation vs the model and pymatting, with its error vs pymatting
#   alpha_matting: alpha matting stage by stage vs Python rembg's matting step, at photo size, 1080p, 4K
#   temporal: error against a known alpha and flicker on a moving clip, per model, smoothing off and on
#   folder: pipelines/cutout-folder.sh against rembg p on the same folder: images/s, memory, alpha
# Usage: scripts/bench.sh [rembgfilter|lipsyncsrc|rembgfilter_video|soak|remote|lipsync|foreground|alpha_matting|temporal|folder]   (all when none is named)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh" --test
source "$REPO/scripts/env.sh"
cd "$REPO"
for bench in "${@:-rembgfilter lipsyncsrc rembgfilter_video soak remote lipsync foreground alpha_matting temporal folder}"; do
    for name in $bench; do
        cargo bench --bench "$name"
    done
done
