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
#   c-cluster    cpsd as one process and as the 2x2x2 cluster (2 fronts, 2 cores,
#                2 storage nodes under one supervisor, clients spread over the
#                fronts): CPU of every cpsd process per delivery, and the ratio
#                cluster / one process (the cluster listens on PORT_BASE+10..+15)
# Every cpsload measurement is repeated REPEAT times (default 2), the servers
# in turn.  BUILD names the build directory (default ./build); the servers
# listen on PORT_BASE (lwsbare, default 3097), +1 (cpsd) and +2 (chainpad-server).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-$root/build}
repeat=${REPEAT:-2}
base=${PORT_BASE:-3097}
P_LWS=$base; P_CPSD=$((base + 1)); P_REF=$((base + 2))
scenario=${1:-broadcast}; shift || true
cd "$here"
[ -d node_modules ] || npm install --no-audit --no-fund --silent
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true    # the idle and scale scenarios hold 10,000+ sockets
tmp=$(mktemp -d)
cpid=; rpid=; lpid=
trap 'for p in $cpid $rpid $lpid; do kill $p 2>/dev/null || true; done; rm -rf "$tmp"' EXIT
cat > "$tmp/bench.lua" <<LUA
return { listen = { host = "127.0.0.1", port = $P_CPSD, extra_ports = {} }, data_dir = "$tmp/data", log = { level = "warn" } }
LUA
start_cpsd () { "$build/cpsd" --config "$tmp/bench.lua" 2>"$tmp/cpsd.log" & cpid=$!; }
start_ref () { node ref-relay.js $P_REF 2>"$tmp/ref.log" & rpid=$!; }
start_lws () { "$build/contrib/bench/lwsbare" $P_LWS 2>"$tmp/lws.log" & lpid=$!; }
url () { echo "ws://127.0.0.1:$1/cryptpad_websocket"; }
alive () {   # every server started must still run after its start-up second
    for p in $cpid $rpid $lpid; do
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

case "$scenario" in
broadcast|history|idle|churn)
    start_cpsd; start_ref; sleep 1; alive
    echo "== cpsd ($scenario)"
    node bench.js --url "$(url $P_CPSD)" --scenario "$scenario" --pid $cpid --label cpsd "$@" || true
    echo "== chainpad-server relay ($scenario)"
    node bench.js --url "$(url $P_REF)" --scenario "$scenario" --pid $rpid --label chainpad-server "$@" || true
    ;;
c-broadcast|c-idle|c-history|c-scale|c-client)
    cpsload="$build/contrib/bench/cpsload"
    [ -x "$cpsload" ] || { echo "run.sh: $cpsload is not built (cmake --build $build)" >&2; exit 2; }
    start_cpsd; start_ref; start_lws; sleep 1; alive
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
        "$cpsload" --url "$u" --scenario broadcast --server-pid "$pid" --label "$label" --json "$@" >"$tmp/out.txt" || true
        sed '$d' "$tmp/out.txt"
        tail -n 1 "$tmp/out.txt" >> "$results"
    }
    for r in $(seq 1 "$repeat"); do
        one cpsd "$(url $P_CPSD)" $cpid "$@"
        one cluster "$(url $F0),$(url $F1)" $lpid "$@"
    done
    echo "== one process vs the 2x2x2 cluster (broadcast, $repeat runs each, same run)"
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
