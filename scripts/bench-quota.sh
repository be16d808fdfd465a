#!/usr/bin/env bash
# Relay quotas benchmark (issue 8 item 6, SPEC A8): another org's session page latency,
# idle and while one machine of a busy org writes as fast as it can — with the default write
# budget and with none, in the same run. Prints a Markdown table (docs/BENCHMARKS.md).
# Not part of .ci/run. BENCH_REQUESTS (default 300) page loads per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked -p viewport-server --test relay -- --ignored --nocapture --exact \
  bench_another_orgs_pages_while_one_machine_writes_flat_out 2>&1 | grep -E '^\|'
