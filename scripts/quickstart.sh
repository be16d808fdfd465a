#!/usr/bin/env bash
# Runs the whole loop on this machine: builds vpd and viewport-server, starts a local
# platform on SQLite (with a first account) and the vpd daemon, ready to pair.
#   ./scripts/quickstart.sh          start (again) and print what to do next
#   ./scripts/quickstart.sh stop     stop both
#   ./scripts/quickstart.sh clean    stop both and remove the quickstart's directory
# Everything it makes lives in ./.quickstart (VPD_QUICKSTART_DIR): the server's database and
# log, the daemon's home with its tokens (in a file there, never the OS keyring). It registers
# no login item and changes nothing under ~/.config or ~/.viewport.
# The platform's port is 8080 (VPD_QUICKSTART_PORT), the web UI's 7070 (VPD_QUICKSTART_UI_PORT);
# VPD_QUICKSTART_BIN names a folder of already built binaries (vpd, vpd-daemon,
# viewport-server; no build then).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${VPD_QUICKSTART_DIR:-$PWD/.quickstart}
PORT=${VPD_QUICKSTART_PORT:-8080}
URL="http://127.0.0.1:$PORT"
BIN=${VPD_QUICKSTART_BIN:-$PWD/target/release}
export VIEWPORT_HOME="$DIR/home"
# Tokens stay in the quickstart's own home (config.json, 0600), not in the OS keyring.
export VPD_KEYRING=off
if [ -n "${VPD_QUICKSTART_UI_PORT:-}" ]; then export VPD_UI_PORT="$VPD_QUICKSTART_UI_PORT"; fi

stop() {
  if [ -x "$BIN/vpd" ] && [ -d "$VIEWPORT_HOME" ]; then "$BIN/vpd" daemon stop || true; fi
  if [ -f "$DIR/server.pid" ] && kill "$(cat "$DIR/server.pid")" 2>/dev/null; then
    # Wait for it to let go of the port and the database.
    for _ in $(seq 1 100); do kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null || break; sleep 0.1; done
    echo "viewport-server stopped"
  fi
  rm -f "$DIR/server.pid"
}
case "${1:-}" in
  stop) stop; exit 0 ;;
  clean) stop; rm -rf "$DIR"; echo "Removed $DIR"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [stop|clean]" >&2; exit 2 ;;
esac

if [ -z "${VPD_QUICKSTART_BIN:-}" ]; then
  echo "Building vpd and viewport-server (release; the first build takes a few minutes)…"
  cargo build --release --locked --bin vpd --bin vpd-daemon --bin viewport-server
fi
mkdir -p "$DIR" && chmod 700 "$DIR"

if [ -f "$DIR/server.pid" ] && kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
  echo "viewport-server already running (pid $(cat "$DIR/server.pid"))"
else
  if [ ! -f "$DIR/first-account.txt" ]; then
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
    printf '%s' "$password" | "$BIN/viewport-server" admin --db "$DIR/viewport.db" user create demo@localhost --password-stdin >/dev/null
    "$BIN/viewport-server" admin --db "$DIR/viewport.db" org create "Demo Org" --slug demo >/dev/null
    "$BIN/viewport-server" admin --db "$DIR/viewport.db" member add --org demo --user demo@localhost >/dev/null
    (umask 077; printf 'email: demo@localhost\npassword: %s\n' "$password" > "$DIR/first-account.txt")
  fi
  nohup "$BIN/viewport-server" serve --listen "127.0.0.1:$PORT" --db "$DIR/viewport.db" >>"$DIR/server.log" 2>&1 &
  echo $! > "$DIR/server.pid"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
    if ! kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; then
      echo "viewport-server did not start; last lines of $DIR/server.log:" >&2; tail -n 5 "$DIR/server.log" >&2; exit 1
    fi
    sleep 0.1
  done
fi
# No login item: a demo must not change what starts when you log in.
"$BIN/vpd" install --server "$URL" --no-login-item

cat <<MSG

Ready. A local Viewport platform runs at $URL (SQLite: $DIR/viewport.db)
and the vpd daemon runs with its home in $VIEWPORT_HOME.

  1. In this shell:   export VIEWPORT_HOME=$VIEWPORT_HOME VPD_KEYRING=off PATH=$BIN:\$PATH
  2. Pair:            vpd pair --org demo
     and approve in the browser as $(sed -n 's/^email: //p' "$DIR/first-account.txt"), password $(sed -n 's/^password: //p' "$DIR/first-account.txt")
     (also in $DIR/first-account.txt; sign-in page: $URL/signin)
  3. Bind a project:  vpd bind ~/path/to/project --org demo
  4. Look:            vpd status · $URL/orgs/demo/machines

Stop everything with ./scripts/quickstart.sh stop; remove it all with ./scripts/quickstart.sh clean
($DIR is all it made: nothing was registered to start at login, nothing written to the keyring).
MSG
