#!/usr/bin/env bash
# Usage: test/scripts/postgres.sh start|stop|url
#
#   start   Create a throwaway PostgreSQL cluster (apt's server binaries,
#           initdb as the postgres user) in PSTEST_PG_DIR
#           (/var/lib/premiscale-test/postgres), from empty, listening on
#           127.0.0.1:PSTEST_PG_PORT (55432) with password authentication,
#           and a role "premiscale" (password "premiscale-test", CREATEDB)
#           for the tests. Nothing of the system's own clusters is used.
#   stop    Stop that cluster (fast shutdown) and remove its directory.
#   url     Print postgres://premiscale:premiscale-test@127.0.0.1:PORT, the
#           base the tests append a database name to.
# Needs root. Idempotent.
set -euo pipefail

DIR="${PSTEST_PG_DIR:-/var/lib/premiscale-test/postgres}"
PORT="${PSTEST_PG_PORT:-55432}"
ROLE=premiscale
PASSWORD=premiscale-test

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

bindir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -x "$d/initdb" ]] || die "no PostgreSQL server binaries in /usr/lib/postgresql (apt package postgresql)"
  echo "$d"
}

as_pg() { runuser -u postgres -- "$@"; }

case "${1:-}" in
  start)
    bin="$(bindir)"
    if [[ -f "$DIR/data/postmaster.pid" ]] && as_pg "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
      log "already running on 127.0.0.1:$PORT"
      exit 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    chown postgres: "$DIR"
    pw="$(mktemp)"
    echo "$PASSWORD" > "$pw"
    chown postgres: "$pw"
    as_pg "$bin/initdb" -D "$DIR/data" -U postgres --pwfile="$pw" --auth-local=peer --auth-host=scram-sha-256 >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; rm -f "$pw"; die "initdb failed"; }
    rm -f "$pw"
    as_pg "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
      -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
      || { cat "$DIR/server.log" >&2; die "pg_ctl start failed"; }
    as_pg "$bin/psql" -q -h "$DIR" -p "$PORT" -U postgres -d postgres \
      -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" >/dev/null
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (role $ROLE)"
    ;;
  stop)
    bin="$(bindir)"
    if [[ -f "$DIR/data/postmaster.pid" ]]; then
      as_pg "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
  url)
    echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
