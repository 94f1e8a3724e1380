#!/usr/bin/env bash
# Benchmarks rembgfilter against bare model inference and Python rembg; prints ratios.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh" --test
source "$REPO/scripts/env.sh"
cd "$REPO"
cargo bench --bench rembgfilter "$@"
