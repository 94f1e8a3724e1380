#!/usr/bin/env bash
# Quick start 2: set up neuralfx with the reference oracles and run the whole test suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh" --test
source "$REPO/scripts/env.sh"
cd "$REPO"
# Release profile: the parity and pipeline tests push real frames through the model.
cargo test --release "$@"
