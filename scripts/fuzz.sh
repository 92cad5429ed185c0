#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), starting from the
# committed seed corpus in fuzz/corpus/<target>/. New inputs libFuzzer finds go to a
# scratch corpus (not committed); a crash leaves its input in fuzz/artifacts/<target>/
# and fails the script. CI runs it briefly: `scripts/fuzz.sh 10`.
#
# cargo-fuzz needs nightly compiler flags (-Z sanitizer); with only a stable toolchain
# installed, RUSTC_BOOTSTRAP=1 lets stable accept them. cargo-fuzz itself is installed
# from crates.io when missing.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   FUZZ_FLAGS="--dev -s none" scripts/fuzz.sh 10   # CI: an unoptimised build without
#                                                  # AddressSanitizer, twice as fast to build
#
# The default build is optimised, with debug assertions (overflow checks) and
# AddressSanitizer: for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
read -r -a flags <<<"${FUZZ_FLAGS:-}"
cargo fuzz build "${flags[@]}"
for target in "${targets[@]}"; do
    scratch=$(mktemp -d)
    echo "== fuzz $target for ${seconds}s"
    status=0
    cargo fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"$scratch.log" 2>&1 || status=$?
    grep -E "^(Done|stat::number_of_executed_units|stat::new_units_added|SUMMARY)" "$scratch.log" || true
    if [ "$status" -ne 0 ]; then
        grep -E "panicked|ERROR" -A5 "$scratch.log" >&2 || tail -40 "$scratch.log" >&2
        echo "fuzz target $target failed (input in fuzz/artifacts/$target/)" >&2
        rm -rf "$scratch" "$scratch.log"
        exit "$status"
    fi
    rm -rf "$scratch" "$scratch.log"
done
