# Sourced by scripts/package.sh and scripts/bench-hint.sh. build_static_vpd builds the `vpd`
# command-line binary as releases ship it and prints its path: on Linux, statically linked
# against glibc (static-pie), so each shell-hook run skips the dynamic loader; elsewhere the
# normal release build. `vpd` does no name lookups (every network call is the daemon's), so
# glibc's static-linking caveat about NSS does not reach it; `vpd` also needs no user
# database lookup while HOME is set.
build_static_vpd() {
  local host
  host="$(rustc -vV | sed -n 's/^host: //p')"
  case "$host" in
    *-linux-gnu)
      # An explicit --target keeps the flag off build scripts and proc-macros (which
      # cannot be static) and puts the result in target/$host/release.
      RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        cargo build -q --release --locked --bin vpd --target "$host" >&2 || return 1
      echo "$PWD/target/$host/release/vpd"
      ;;
    *)
      cargo build -q --release --locked --bin vpd >&2 || return 1
      echo "$PWD/target/release/vpd"
      ;;
  esac
}
