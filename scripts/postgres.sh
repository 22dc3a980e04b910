#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for tests and trials.
#
#   scripts/postgres.sh start DIR [PORT]   initdb DIR/data (once), start it on 127.0.0.1:PORT
#                                          (default 54329) and print its SQLAlchemy URL
#   scripts/postgres.sh stop DIR           stop the server of DIR (fast shutdown)
#
# The binaries come from Debian's `postgresql` package (scripts/system-deps.sh installs it when
# missing); they live in /usr/lib/postgresql/<version>/bin, which is often not on PATH.  initdb
# refuses to run as root, so as root the data directory is owned by `postgres` and the server
# runs as that user (runuser).  Authentication is `trust` on loopback only: never for real data.
set -euo pipefail

usage() { echo "usage: $0 start DIR [PORT] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1
dir=$(realpath -m "$2")
port=${3:-54329}

bindir() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$found" ] && [ -x "$found/initdb" ]; then echo "$found"; return; fi
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  echo "PostgreSQL server binaries not found: run scripts/system-deps.sh (apt-get install postgresql)" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

bin=$(bindir)
case "$action" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$dir"
      runuser -u postgres -- test -x "$dir" || {
        echo "user postgres cannot reach $dir: every parent directory must be searchable" \
             "(e.g. use a directory made by mktemp -d directly under /tmp)" >&2; exit 1; }
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start \
      >/dev/null || { cat "$dir/log" >&2; exit 1; }
    echo "postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
    ;;
  stop)
    [ -f "$dir/data/postmaster.pid" ] || exit 0
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
  *) usage ;;
esac
