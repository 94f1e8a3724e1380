#!/usr/bin/env bash
# Quick start 2: set up neuralfx with the reference oracles and run the whole test suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh" --test
source "$REPO/scripts/env.sh"
cd "$REPO"
# Release profile: the parity and pipeline tests push real frames through the model. Every test
# binary runs even after one fails; the time each took is printed at the end, slowest first.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
started=$SECONDS
set +e
cargo test --release --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo
echo "seconds per test binary (cargo test --release --test NAME runs one):"
awk '/^ *Running /{ name = ($2 == "unittests") ? $3 : $2 }
     /^ *Doc-tests /{ name = "doc-tests " $2 }
     /^test result:/{ for (i = 1; i < NF; i++) if ($i == "in") { t = $(i + 1); sub(/s$/, "", t) }
                      printf "%8.1f  %s\n", t, name }' "$log" | sort -rn
echo "build and tests: $((SECONDS - started)) s"
exit "$status"
