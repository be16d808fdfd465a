#!/usr/bin/env bash
# The benchmarks behind docs/BENCHMARKS.md (SPEC section 13). Prints the numbers; copy them
# into docs/BENCHMARKS.md with the date and machine.
#  1. in-process binding resolution at depth 12: the pure policy, and with the file-system walk
#  2. `vpd hint` per shell prompt, whole process, against `direnv export bash` in the same tree
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in direnv hyperfine; do
  command -v "$tool" >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq direnv hyperfine; break; }
done

echo "== 1. resolution (criterion)"
cargo bench -q -p vpd-core --bench resolve -- --noplot 2>/dev/null | grep -E "^resolve|time:"
cargo bench -q -p vpd-daemon --bench walk -- --noplot 2>/dev/null | grep -E "^resolve|time:"

echo "== 3. streaming (real release binaries on loopback; prints a table)"
cargo build -q --release --locked --workspace --bins
cargo bench -q -p vpd-e2e --bench streaming 2>/dev/null | grep -E '^\|'

echo "== 2. vpd hint vs direnv export bash and /bin/true (hyperfine)"
./scripts/bench-hint.sh
