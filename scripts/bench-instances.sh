#!/usr/bin/env bash
# The several-instances benchmark (issue 14; docs/BENCHMARKS.md). Prints two Markdown tables:
#  1. in-process instances (crates/viewport-server/tests/instances.rs, bench_several_instances):
#     100 simulated daemons × 3 sessions on SQLite, on PostgreSQL with one instance and with
#     two; ack latency steady and flat out; idle database load; approval → long poll,
#     revocation → close, and a member removal's fan-out, across instances;
#  2. real processes behind the harness's balancer (tests/balanced.rs, bench_failover): the
#     real vpd's time to reconnect to another instance after the one holding its connection
#     is killed, and after its host vanishes (default 20 s ping, 10 s pong timeout).
# Uses a private PostgreSQL cluster (or VIEWPORT_TEST_PG). Not part of .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p viewport-server -p vpd-cli -p vpd-daemon --bins
cargo test --release --locked -p viewport-server --test instances -- --ignored --nocapture --exact \
  bench::bench_several_instances 2>&1 | grep -E '^\|'
echo
VIEWPORT_SERVER_BIN="$PWD/target/release/viewport-server" VPD_BIN="$PWD/target/release/vpd" \
  cargo test --release --locked -p vpd-e2e --test balanced -- --ignored --nocapture --exact \
  bench_failover 2>&1 | grep -E '^\|'
