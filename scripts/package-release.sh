#!/usr/bin/env bash
# Packs a release archive as `vpd update` installs it (docs/RELEASES.md): the binaries of one
# build and `viewport-release.json`, which names the release, in a .tar.gz. Run on the release
# manager's machine, then `viewport-server release sign` and `admin release publish`.
# Usage: scripts/package-release.sh VERSION BINDIR OUT.tar.gz [OS ARCH] [FILES…]
#   FILES defaults to the binaries a release ships that BINDIR has (vpd and vpd-daemon at least).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,6p' "$0" >&2; exit 2
fi
version="$1"; bindir="$2"; out="$3"; shift 3
os="${1:-linux}"; arch="${2:-$(uname -m)}"; shift $(( $# >= 2 ? 2 : $# ))
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  for f in vpd vpd-daemon viewport-tray viewport-window; do
    [ -f "$bindir/$f" ] && files+=("$f")
  done
fi
for f in vpd vpd-daemon; do
  [[ " ${files[*]} " == *" $f "* ]] || { echo "package-release: $f is missing from $bindir" >&2; exit 1; }
done
said="$("$bindir/vpd" --version | awk '{print $2}')"
[ "$said" = "$version" ] || { echo "package-release: $bindir/vpd says it is $said, not $version" >&2; exit 1; }
stage="$(mktemp -d)"; trap 'rm -rf "$stage"' EXIT
list=""
for f in "${files[@]}"; do
  cp "$bindir/$f" "$stage/$f"; chmod 0755 "$stage/$f"
  list="$list${list:+, }\"$f\""
done
printf '{\n  "version": "%s",\n  "os": "%s",\n  "arch": "%s",\n  "files": [%s]\n}\n' "$version" "$os" "$arch" "$list" > "$stage/viewport-release.json"
tar -C "$stage" -czf "$out" "${files[@]}" viewport-release.json
echo "$out: vpd $version for $os $arch (${files[*]})"
