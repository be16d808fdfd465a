#!/usr/bin/env bash
# `vpd hint` per shell prompt, whole process, against `direnv export bash` and an empty process
# (`/bin/true`) in the same 12-level tree, side by side in one hyperfine run (SPEC section 13:
# ≤ 3 ms median and ≥ 3× faster than direnv; issue 9: ratio to /bin/true, aim ≤ 1.5×).
# Prints a table of medians; docs/BENCHMARKS.md has the last one. Needs direnv and hyperfine
# (installed from Debian when missing) and a release build of vpd (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in direnv hyperfine; do
  command -v "$tool" >/dev/null || { sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo; $sudo apt-get install -y -qq direnv hyperfine; break; }
done
# `vpd` as scripts/package.sh ships it on Linux: statically linked (docs/DECISIONS.md).
source scripts/static-vpd.sh
VPD="$(build_static_vpd)"
RUNS=${RUNS:-1000}
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

table() {
  python3 - "$1" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
ms = lambda c: r[c]["median"] * 1000
vpd = next(c for c in r if c.endswith(" hint"))
print(f"| `vpd hint` | `direnv export bash` | `/bin/true` | direnv ÷ vpd | vpd ÷ true |")
print(f"|---|---|---|---|---|")
print(f"| {ms(vpd):.2f} ms | {ms('direnv export bash'):.2f} ms | {ms('/bin/true'):.2f} ms | "
      f"{ms('direnv export bash') / ms(vpd):.2f}× | {ms(vpd) / ms('/bin/true'):.2f}× |")
PY
}

echo "vpd: $(stat -c %s "$VPD") bytes"
echo "-- a) nothing applies (no hint file / no .envrc anywhere), medians of $RUNS runs"
(cd "$deep" && hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$T/a.json" "$VPD hint" "direnv export bash" "/bin/true" >/dev/null 2>&1)
table "$T/a.json"

echo "-- b) something applies: the repo is bound (vpd) / has an allowed .envrc, already loaded (direnv)"
"$VPD" bind "$HOME/code/repo" --org acme >/dev/null
echo 'export FOO=bar' > "$HOME/code/repo/.envrc"
direnv allow "$HOME/code/repo" >/dev/null 2>&1
(cd "$deep" && eval "$(direnv export bash 2>/dev/null)" && hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$T/b.json" "$VPD hint" "direnv export bash" "/bin/true" >/dev/null 2>&1)
table "$T/b.json"
