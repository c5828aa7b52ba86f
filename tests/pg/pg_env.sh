#!/bin/sh
# pg_env.sh start|stop|halt|resume DIR - a throwaway PostgreSQL 15 for the storage-pg
# tests: initdb in DIR, the server on a unix socket in DIR only (no TCP), a
# database "cps" owned by the non-superuser role "cps"; `stop` stops that
# server by its pid and removes DIR.  As root (CI) the server runs as the
# unprivileged user nobody.  The tests then use PGHOST=DIR PGDATABASE=cps
# PGUSER=cps (written to DIR/env too).  CPS_PG_FSYNC=on for durable commits
# (off by default: these are tests on a shared disk).  `halt` stops the
# server but keeps its data, `resume` starts it again (a database lost and
# back, for tests/integration/storage_pg.test.js).
set -eu
cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] || { echo "usage: $0 start|stop|halt|resume DIR" >&2; exit 2; }
bin=${CPS_PG_BIN:-/usr/lib/postgresql/15/bin}
case "$dir" in /*) ;; *) echo "$0: DIR must be absolute" >&2; exit 2 ;; esac

# Runs a command as the server's user: nobody when we are root.
as_user() {
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

server_up() {
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -c listen_addresses= -c fsync=${CPS_PG_FSYNC:-off} -c max_connections=200" start >/dev/null || {
        cat "$dir/server.log" >&2; exit 1; }
}

stop() {
    if [ -f "$dir/data/postmaster.pid" ]; then
        pid=$(head -n 1 "$dir/data/postmaster.pid")
        as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
            # pg_ctl could not: signal that one postmaster, by its pid.
            case "$pid" in ''|*[!0-9]*) ;; *) kill -TERM "$pid" 2>/dev/null || true ;; esac
            i=0
            while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
        }
    fi
    rm -rf "$dir"
}

case "$cmd" in
start)
    stop                       # a stale one from an interrupted run
    mkdir -p "$dir"
    chmod 700 "$dir"
    [ "$(id -u)" = 0 ] && chown nobody "$dir"
    as_user "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2; exit 1; }
    server_up
    # The role the tests connect as: may create databases (one per test
    # server), owns "cps", and is no superuser.
    as_user "$bin/psql" -h "$dir" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE cps LOGIN CREATEDB NOSUPERUSER" -c "CREATE DATABASE cps OWNER cps" >/dev/null
    printf 'PGHOST=%s\nPGPORT=5432\nPGDATABASE=cps\nPGUSER=cps\n' "$dir" >"$dir/env"
    chmod 755 "$dir"           # the socket, for whoever runs the tests
    echo "PostgreSQL up on $dir"
    ;;
stop)
    stop
    ;;
halt)
    as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null
    ;;
resume)
    server_up
    ;;
*)
    echo "usage: $0 start|stop|halt|resume DIR" >&2
    exit 2
    ;;
esac
