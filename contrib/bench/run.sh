#!/usr/bin/env bash
# Runs one bench scenario against cpsd and against the reference relays in
# the same run, and prints the figures side by side.
#   contrib/bench/run.sh [SCENARIO] [options...]
# bench.js (Node, the real netflux client), cpsd and chainpad-server:
#   broadcast (default), history, idle, churn; bighistory: 20 readers of a
#   100 MB log, cpsd only (the relay reference keeps no history).
# cpsload (C, contrib/bench/cpsload; options go to cpsload):
#   c-broadcast  cpsd, lwsbare and chainpad-server: us of server CPU per delivery,
#                delivered/s and the ratio to lwsbare (the machine's reference)
#   c-idle       the same three: server RSS per idle connection
#   c-history    cpsd only: MiB/s served and server CPU per MiB
#   c-scale      cpsd (10,000 connections on 1,000 pads by default)
#   c-client     bench.js and cpsload on the same broadcast against lwsbare and
#                cpsd: the client CPU per delivery of each harness
#   c-shapes     c-broadcast at 20x5x200, 200x5x200 and 20x50x50 (pads x users x
#                messages): whether the work per delivery grows with pads or users
#   c-ab DIR_A DIR_B [cpsload args]  two cpsd builds (build directories) in
#                turn, REPEAT rounds (default 5), a fresh server and data directory
#                each run: server us/delivery of each, for before/after a change
# storage-pg against storage-fs (cpsload, same run; a throwaway PostgreSQL 15
# from tests/pg/pg_env.sh, fsync=$PG_FSYNC (default off), synchronous_commit on;
# PG_POOL: storage_pg.pool, default 4, with UV_THREADPOOL_SIZE to match):
#   pg-writer    one ACK-paced writer on one pad (cpsload history's write
#                phase, write msgs/s): cpsd on fs and on pg
#   pg-broadcast the broadcast scenario on the three (HARNESS=bench.js: with
#                the Node harness on the real netflux client instead of cpsload)
#   pg-history   K readers of an N-message history, cpsd on fs and on pg
#   pg-blob      blobget.js: a 100 MB blob read by 20 clients, the server's RSS
#                sampled, cpsd on fs and on pg (seeded by cpsd migrate)
#   c-cluster    cpsd as one process and as the 2x2x2 cluster (2 fronts, 2 cores,
#                2 storage nodes under one supervisor, clients spread over the
#                fronts): CPU of every cpsd process per delivery, and the ratio
#                cluster / one process (the cluster listens on PORT_BASE+10..+15);
#                CLUSTER_SCENARIO=scale runs the 10,000-connection scale scenario instead
# Every cpsload measurement is repeated REPEAT times (default 2), the servers
# in turn.  BUILD names the build directory (default ./build); the servers
# listen on PORT_BASE (lwsbare, default 3097), +1 (cpsd) and +2 (chainpad-server),
# +3 (cpsd on storage-pg).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
orig=$PWD    # c-ab directories are relative to where run.sh was started
root=$(cd "$here/../.." && pwd)
build=$(cd "${BUILD:-$root/build}" && pwd)   # relative to the caller's directory
repeat=${REPEAT:-2}
base=${PORT_BASE:-3097}
P_LWS=$base; P_CPSD=$((base + 1)); P_REF=$((base + 2)); P_PG=$((base + 3))
scenario=${1:-broadcast}; shift || true
cd "$here"
[ -d node_modules ] || npm install --no-audit --no-fund --silent
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true    # the idle and scale scenarios hold 10,000+ sockets
# cpsd needs one descriptor per connection (plus logs and listeners); cpsd has
# no per-IP limit and limits.max_sessions defaults to 100,000, so the soft
# limit, raised here to the hard one, is the only ceiling for c-scale/c-idle
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 10240 ] ||
    echo "run.sh: warning: ulimit -n is $(ulimit -n) (hard limit): 10,000 connections will not fit" >&2
tmp=$(mktemp -d)
cpid=; rpid=; lpid=; gpid=; pgdir=
trap 'for p in $cpid $rpid $lpid $gpid; do kill $p 2>/dev/null || true; done; rm -rf "$tmp"
      [ -z "$pgdir" ] || sh "$root/tests/pg/pg_env.sh" stop "$pgdir"' EXIT
cat > "$tmp/bench.lua" <<LUA
return { listen = { host = "127.0.0.1", port = $P_CPSD, extra_ports = {} }, data_dir = "$tmp/data", log = { level = "warn" } }
LUA
start_cpsd () { "$build/cpsd" --config "$tmp/bench.lua" 2>"$tmp/cpsd.log" & cpid=$!; }
start_ref () { node ref-relay.js $P_REF 2>"$tmp/ref.log" & rpid=$!; }
start_lws () { "$build/contrib/bench/lwsbare" $P_LWS 2>"$tmp/lws.log" & lpid=$!; }
# cpsd on storage-pg: a PostgreSQL of its own (outside $tmp: as root the
# server runs as nobody, who cannot enter $tmp).
start_pg () {
    pgdir=$(mktemp -d -u /tmp/cpsbench-pg.XXXXXX)
    CPS_PG_FSYNC=${PG_FSYNC:-off} sh "$root/tests/pg/pg_env.sh" start "$pgdir" >/dev/null
    conninfo="host=$pgdir dbname=cps user=cps"
    cat > "$tmp/bench-pg.lua" <<LUA
return { listen = { host = "127.0.0.1", port = $P_PG, extra_ports = {} }, data_dir = "$tmp/data-pg", log = { level = "warn" },
         storage_backend = "pg", storage_pg = { conninfo = "$conninfo", pool = ${PG_POOL:-4} } }
LUA
    echo "PostgreSQL 15: fsync=${PG_FSYNC:-off}, synchronous_commit=on; storage_pg.pool=${PG_POOL:-4}, UV_THREADPOOL_SIZE=${UV_THREADPOOL_SIZE:-4}"
}
start_cpsd_pg () { "$build/cpsd" --config "$tmp/bench-pg.lua" 2>"$tmp/cpsd-pg.log" & gpid=$!; }
url () { echo "ws://127.0.0.1:$1/cryptpad_websocket"; }
alive () {   # every server started must still run after its start-up second
    for p in $cpid $rpid $lpid $gpid; do
        kill -0 "$p" 2>/dev/null || { echo "run.sh: a server exited at start:" >&2; cat "$tmp"/*.log >&2; exit 1; }
    done
}

if [ "$scenario" = bighistory ]; then
    chan=b16b16b16b16b16b16b16b16b16b16b1
    node mklog.js "$tmp/data" $chan 100
    start_cpsd; sleep 1
    node bighistory.js --url "$(url $P_CPSD)" --pid $cpid --channel $chan "$@"
    exit
fi

if [ "$scenario" = c-shapes ]; then
    for shape in "--pads 20 --users 5 --messages 200" "--pads 200 --users 5 --messages 200" "--pads 20 --users 50 --messages 50"; do
        echo "##### c-broadcast $shape"
        # shellcheck disable=SC2086
        REPEAT=$repeat "$here/run.sh" c-broadcast $shape "$@"
    done
    exit
fi

if [ "$scenario" = c-ab ]; then
    [ $# -ge 2 ] || { echo "usage: run.sh c-ab BUILD_DIR_A BUILD_DIR_B [cpsload options]" >&2; exit 2; }
    a=$(cd "$orig" && cd "$1" && pwd); b=$(cd "$orig" && cd "$2" && pwd); shift 2
    [ $# -gt 0 ] || set -- --scenario broadcast --pads 20 --users 5 --messages 1000
    rounds=${REPEAT:-5}
    for r in $(seq 1 "$rounds"); do
        for d in "$a" "$b"; do
            rm -rf "$tmp/data"
            "$d/cpsd" --config "$tmp/bench.lua" >/dev/null 2>"$tmp/cpsd.log" & cpid=$!
            sleep 1; alive
            line=$("$build/contrib/bench/cpsload" --url "$(url $P_CPSD)" --server-pid $cpid "$@" 2>&1 | grep -E 'send phase cpu|history payload|server CPU while' | tr '\n' ' ' || true)
            echo "$d: ${line:-no figure (see $tmp/cpsd.log)}"
            kill $cpid; wait $cpid 2>/dev/null || true; cpid=
        done
    done
    exit
fi

if [ "$scenario" = pg-blob ]; then
    # One blob, written once in a seed datastore, copied into both backends.
    start_pg
    seed=$(node blobget.js --data-dir "$tmp/seed" --write-only "$@")
    bid=$(echo "$seed" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).id))')
    bsum=$(echo "$seed" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).sha256))')
    mkdir -p "$tmp/data"; cp -r "$tmp/seed/blob" "$tmp/data/"
    "$build/cpsd" migrate --from "fs:$tmp/seed" --to "pg:$conninfo" >"$tmp/migrate.log" 2>&1 || { cat "$tmp/migrate.log" >&2; exit 1; }
    start_cpsd; start_cpsd_pg; sleep 1; alive
    for r in $(seq 1 "$repeat"); do
        echo "== cpsd on storage-fs (run $r)"
        node blobget.js --url "http://127.0.0.1:$P_CPSD" --pid $cpid --data-dir "$tmp/data" --id "$bid" --sha256 "$bsum" "$@" | head -n 1 || true
        echo "== cpsd on storage-pg (run $r)"
        node blobget.js --url "http://127.0.0.1:$P_PG" --pid $gpid --data-dir "$tmp/data-pg" --id "$bid" --sha256 "$bsum" "$@" | head -n 1 || true
    done
    exit
fi

case "$scenario" in
broadcast|history|idle|churn)
    start_cpsd; start_ref; sleep 1; alive
    echo "== cpsd ($scenario)"
    node bench.js --url "$(url $P_CPSD)" --scenario "$scenario" --pid $cpid --label cpsd "$@" || true
    echo "== chainpad-server relay ($scenario)"
    node bench.js --url "$(url $P_REF)" --scenario "$scenario" --pid $rpid --label chainpad-server "$@" || true
    ;;
c-broadcast|c-idle|c-history|c-scale|c-client|pg-writer|pg-broadcast|pg-history)
    cpsload="$build/contrib/bench/cpsload"
    [ -x "$cpsload" ] || { echo "run.sh: $cpsload is not built (cmake --build $build)" >&2; exit 2; }
    case "$scenario" in
    pg-*) start_pg; start_cpsd; start_cpsd_pg; start_ref ;;
    *) start_cpsd; start_ref; start_lws ;;
    esac
    sleep 1; alive
    results="$tmp/results.jsonl"; : > "$results"
    one () {   # one [harness] label port pid scenario args...
        local harness=cpsload; if [ "$1" = bench.js ]; then harness=bench.js; shift; fi
        local label=$1 port=$2 pid=$3 scen=$4; shift 4
        local out="$tmp/out.txt"
        if [ $harness = cpsload ]; then
            "$cpsload" --url "$(url $port)" --scenario "$scen" --server-pid "$pid" --label "$label" --json "$@" >"$out" || true
        else
            node bench.js --url "$(url $port)" --scenario "$scen" --pid "$pid" --label "$label" --json "$@" >"$out" || true
        fi
        sed '$d' "$out"
        tail -n 1 "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);j.harness=process.argv[1];console.log(JSON.stringify(j))}catch(e){}})' $harness >> "$results"
    }
    for r in $(seq 1 "$repeat"); do
        case "$scenario" in
        c-broadcast)
            one cpsd $P_CPSD $cpid broadcast "$@"; one lwsbare $P_LWS $lpid broadcast "$@"; one chainpad-server $P_REF $rpid broadcast "$@" ;;
        c-idle)
            one cpsd $P_CPSD $cpid idle "$@"; one lwsbare $P_LWS $lpid idle "$@"; one chainpad-server $P_REF $rpid idle "$@" ;;
        c-history) one cpsd $P_CPSD $cpid history "$@" ;;
        c-scale) one cpsd $P_CPSD $cpid scale "$@" ;;
        pg-writer)
            # the history scenario's write phase: one writer, window 1 (ACK-paced)
            # (not chainpad-server: ref-relay.js stores nothing, so the scenario
            # cannot finish there; its broadcast row is in pg-broadcast)
            one cpsd-fs $P_CPSD $cpid history --readers 1 "$@"; one cpsd-pg $P_PG $gpid history --readers 1 "$@" ;;
        pg-broadcast)
            # HARNESS=bench.js: the Node harness on the real netflux client
            # instead of cpsload (the same scenario; the client costs ~8x more)
            h=; [ "${HARNESS:-cpsload}" = bench.js ] && h=bench.js
            one $h cpsd-fs $P_CPSD $cpid broadcast "$@"; one $h cpsd-pg $P_PG $gpid broadcast "$@"
            one $h chainpad-server $P_REF $rpid broadcast "$@" ;;
        pg-history) one cpsd-fs $P_CPSD $cpid history "$@"; one cpsd-pg $P_PG $gpid history "$@" ;;
        c-client)
            one bench.js lwsbare $P_LWS $lpid broadcast "$@"; one lwsbare $P_LWS $lpid broadcast "$@"
            one bench.js cpsd $P_CPSD $cpid broadcast "$@"; one cpsd $P_CPSD $cpid broadcast "$@" ;;
        esac
    done
    echo "== comparison ($scenario, $repeat runs each, same machine, same run)"
    node compare.js "$results"
    ;;
c-cluster)
    cpsload="$build/contrib/bench/cpsload"
    [ -x "$cpsload" ] || { echo "run.sh: $cpsload is not built (cmake --build $build)" >&2; exit 2; }
    # the supervisor's descendants are every node: cpsload --server-pid sums them
    F0=$((base + 10)); F1=$((base + 11))
    cat > "$tmp/topo.lua" <<LUA
return {
    key_file = "cluster.key",
    front = { { host = "127.0.0.1", port = $F0, extra_ports = {} }, { host = "127.0.0.1", port = $F1, extra_ports = {} } },
    core = { { host = "127.0.0.1", port = $((base + 12)) }, { host = "127.0.0.1", port = $((base + 13)) } },
    storage = { { host = "127.0.0.1", port = $((base + 14)) }, { host = "127.0.0.1", port = $((base + 15)) } },
    config = { data_dir = "$tmp/cdata", log = { level = "warn" } },
}
LUA
    start_cpsd
    "$build/cpsd" --topology "$tmp/topo.lua" 2>"$tmp/cluster.log" & lpid=$!
    sleep 3; alive
    results="$tmp/results.jsonl"; : > "$results"
    one () {   # one label url pid args...
        local label=$1 u=$2 pid=$3; shift 3
        "$cpsload" --url "$u" --scenario "${CLUSTER_SCENARIO:-broadcast}" --server-pid "$pid" --label "$label" --json "$@" >"$tmp/out.txt" || true
        sed '$d' "$tmp/out.txt"
        tail -n 1 "$tmp/out.txt" >> "$results"
    }
    for r in $(seq 1 "$repeat"); do
        one cpsd "$(url $P_CPSD)" $cpid "$@"
        one cluster "$(url $F0),$(url $F1)" $lpid "$@"
    done
    echo "== one process vs the 2x2x2 cluster (${CLUSTER_SCENARIO:-broadcast}, $repeat runs each, same run)"
    node -e '
const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").filter(Boolean).map(l => { try { return JSON.parse(l) } catch (e) { return null } }).filter(Boolean);
const us = r => r.metrics.server_us_per_delivery;
const one = rows.filter(r => r.label === "cpsd"), cl = rows.filter(r => r.label === "cluster");
for (let i = 0; i < Math.min(one.length, cl.length); i++)
    console.log(`run ${i + 1}: one process ${us(one[i]).toFixed(1)} us/dlv (ok ${one[i].ok}, ${one[i].metrics.delivered_per_sec}/s), cluster ${us(cl[i]).toFixed(1)} us/dlv (ok ${cl[i].ok}, ${cl[i].metrics.delivered_per_sec}/s), cluster / one process ${(us(cl[i]) / us(one[i])).toFixed(2)}`);
' "$results"
    ;;
*) echo "run.sh: unknown scenario $scenario" >&2; exit 2 ;;
esac
