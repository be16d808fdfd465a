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

echo "== 2. vpd hint vs direnv export bash (hyperfine)"
cargo build -q --release --locked --bin vpd
VPD="$PWD/target/release/vpd"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export HOME="$T/home" VIEWPORT_HOME="$T/home/.viewport" VPD_KEYRING=off XDG_DATA_HOME="$T/xdg" XDG_CONFIG_HOME="$T/xdgc"
mkdir -p "$HOME"
# A 12-level tree: $T/home/code/repo(.git)/d1/…/d10
deep="$HOME/code/repo"; mkdir -p "$deep/.git"
for i in $(seq 1 10); do deep="$deep/d$i"; done
mkdir -p "$deep"
# A pairing in config.json (as `vpd pair` writes it), so hint has real data to read.
ORG=01J7M8N9P0Q1R2S3T4V5V6W7X8
mkdir -p "$VIEWPORT_HOME"; chmod 700 "$VIEWPORT_HOME"
cat > "$VIEWPORT_HOME/config.json" <<JSON
{"version":1,"daemon":{"uiPort":7070},"pairings":[{"workspaceId":"$ORG","workspaceName":"Acme","workspaceSlug":"acme",
"installId":"01J7M8N9P0Q1R2S3T4V5V6W7X1","runtimeTargetId":"01J7M8N9P0Q1R2S3T4V5V6W7X2","machineId":"01J7M8N9P0Q1R2S3T4V5V6W7X3",
"machineName":"bench","serverUrl":"http://127.0.0.1:1","relayEndpoint":"ws://127.0.0.1:1/ws","pairedAt":"2026-01-01T00:00:00Z",
"credential":{"store":"file","issueToken":"x"}}]}
JSON
chmod 600 "$VIEWPORT_HOME/config.json"

echo "-- a) nothing applies (no hint file / no .envrc anywhere)"
(cd "$deep" && hyperfine -N --warmup 50 --runs 1000 "$VPD hint" "direnv export bash" 2>/dev/null | grep -vE "^\s*$")

echo "-- b) something applies: the repo is bound (vpd) / has an allowed .envrc, already loaded (direnv)"
"$VPD" bind "$HOME/code/repo" --org acme >/dev/null
echo 'export FOO=bar' > "$HOME/code/repo/.envrc"
direnv allow "$HOME/code/repo" >/dev/null 2>&1
(cd "$deep" && eval "$(direnv export bash 2>/dev/null)" && hyperfine -N --warmup 50 --runs 1000 "$VPD hint" "direnv export bash" 2>/dev/null | grep -vE "^\s*$")
