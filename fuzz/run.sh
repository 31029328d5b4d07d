#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), one after another.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); the stable toolchain takes
# its nightly flags with RUSTC_BOOTSTRAP=1. Findings land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-30}"
command -v cargo-fuzz >/dev/null 2>&1 || { echo "fuzz: cargo-fuzz is missing (cargo install cargo-fuzz)" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
for t in $(cargo fuzz list); do
  echo "== $t for ${secs}s"
  cargo fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048
done
