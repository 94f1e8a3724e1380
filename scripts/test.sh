#!/usr/bin/env bash
# Quick start 2: set up neuralfx with the reference oracles and run the whole test suite.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
started=$SECONDS
# Incremental release builds, for this script only (the set-up's plugin build included): after
# a change to the library the plugin and the test binaries build in 15-45 s instead of ~110 s on
# 2 cores, and the tests take the same CPU time. A build without it (./scripts/setup.sh alone, the benchmarks) is
# made once more at its next run.
export CARGO_PROFILE_RELEASE_INCREMENTAL=true
"$REPO/scripts/setup.sh" --test
source "$REPO/scripts/env.sh"
cd "$REPO"
# Release profile: the parity and pipeline tests push real frames through the model. Every test
# binary runs even after one fails; the time each took is printed at the end, slowest first.
# With no arguments the binaries run two at a time (NEURALFX_TEST_LANES), the longest first
# (scripts/lib/test_lanes.py); with arguments, cargo test runs them one by one with those.
if [ $# -gt 0 ]; then
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
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
else
    built="$(mktemp)"
    trap 'rm -f "$built"' EXIT
    cargo test --release --no-run --message-format=json-render-diagnostics >"$built"
    mapfile -t binaries < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["profile"]["test"]:
        print(message["executable"])' "$built")
    set +e
    python3 "$REPO/scripts/lib/test_lanes.py" "${NEURALFX_TEST_LANES:-2}" "$REPO/target/test-times.txt" \
        -- "${binaries[@]}" -- cargo test --release --doc
    status=$?
    set -e
fi
echo "set-up, build and tests: $((SECONDS - started)) s"
exit "$status"
