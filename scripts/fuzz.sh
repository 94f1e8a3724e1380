#!/usr/bin/env bash
# Fuzzes the readers of outside data (landmarks, .npy headers, .bin JSON, JPEG headers) with
# cargo-fuzz, each for SECONDS (default 60). Any single allocation over 64 MB counts as a crash,
# as a panic does; crashing inputs land in fuzz/artifacts/<target>/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
source "$REPO/scripts/env.sh"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(landmarks npy_header bin_json jpeg_header server_answer)

log() { printf '\033[1m[fuzz]\033[0m %s\n' "$*" >&2; }

if ! rustup toolchain list | grep -q '^nightly'; then
    log "installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
cd "$REPO/fuzz"
mkdir -p artifacts
failed=()
for target in "${TARGETS[@]}"; do
    log "$target: ${SECONDS_PER_TARGET} s (log in fuzz/artifacts/$target.log)"
    mkdir -p "corpus/$target"
    if cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -malloc_limit_mb=64 -rss_limit_mb=2048 \
        >"artifacts/$target.log" 2>&1; then
        log "$target: $(grep -E '^Done [0-9]+ runs' "artifacts/$target.log" | tail -1), nothing found"
    else
        failed+=("$target")
        grep -E '^(==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)' "artifacts/$target.log" >&2 || true
        log "$target: FAILED, see fuzz/artifacts/$target.log"
    fi
done
[ ${#failed[@]} -eq 0 ] || { log "failed: ${failed[*]}"; exit 1; }
