#!/bin/sh
# Re-render every PNG / ICO / ICNS in this directory from the SVG sources.
# Needs: rsvg-convert (Debian: librsvg2-bin), ImageMagick `convert`,
# optionally png2icns (Debian: icnsutils) for icon.icns.
set -eu
cd "$(dirname "$0")"

render() { # render SRC.svg SIZE OUT.png  -> 8-bit RGBA PNG (Tauri requires RGBA)
  rsvg-convert -w "$2" -h "$2" -o "$3.tmp.png" "$1"
  convert "$3.tmp.png" -background none -alpha on -define png:color-type=6 PNG32:"$3"
  rm -f "$3.tmp.png"
}

# Tray state icons: 32x32 and 64x64 (@2x).
for state in connected degraded offline unpaired; do
  render "tray-$state.svg" 32 "tray-$state.png"
  render "tray-$state.svg" 64 "tray-$state@2x.png"
done

# App icon set for the Tauri bundler.
render app-icon.svg 32  32x32.png
render app-icon.svg 128 128x128.png
render app-icon.svg 256 128x128@2x.png
render app-icon.svg 512 icon.png

# Windows .ico with 16, 32, 48 and 256 px images.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for s in 16 32 48 64 128 256 512 1024; do render app-icon.svg "$s" "$tmp/$s.png"; done
convert "$tmp/16.png" "$tmp/32.png" "$tmp/48.png" "$tmp/256.png" icon.ico

# macOS .icns (skipped with a warning if png2icns is not installed).
if command -v png2icns >/dev/null 2>&1; then
  png2icns icon.icns "$tmp/16.png" "$tmp/32.png" "$tmp/48.png" "$tmp/128.png" \
    "$tmp/256.png" "$tmp/512.png" "$tmp/1024.png" >/dev/null
else
  echo "warning: png2icns not found (apt-get install icnsutils); icon.icns not updated" >&2
fi
