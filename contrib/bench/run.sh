#!/usr/bin/env bash
# Runs one bench scenario against cpsd and against the Node.js reference
# relay (chainpad-server) in the same run, and prints both figures.
#   contrib/bench/run.sh [SCENARIO] [bench.js options...]
# SCENARIO: broadcast (default), history, idle, churn: bench.js against
# both; bighistory: 20 readers of a 100 MB log, cpsd only (the relay
# reference keeps no history).  Needs a built ./build/cpsd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
scenario=${1:-broadcast}; shift || true
cd "$here"
[ -d node_modules ] || npm install --no-audit --no-fund --silent
tmp=$(mktemp -d)
trap 'kill $cpid $rpid 2>/dev/null || true; rm -rf "$tmp"' EXIT
cat > "$tmp/bench.lua" <<LUA
return { listen = { host = "127.0.0.1", port = 3098 }, data_dir = "$tmp/data", log = { level = "warn" } }
LUA
cpid=; rpid=
if [ "$scenario" = bighistory ]; then
    chan=b16b16b16b16b16b16b16b16b16b16b1
    node mklog.js "$tmp/data" $chan 100
    "$root/build/cpsd" --config "$tmp/bench.lua" 2>"$tmp/cpsd.log" & cpid=$!
    rpid=; sleep 1
    node bighistory.js --url ws://127.0.0.1:3098/cryptpad_websocket --pid $cpid --channel $chan "$@"
    exit
fi
"$root/build/cpsd" --config "$tmp/bench.lua" 2>"$tmp/cpsd.log" & cpid=$!
node ref-relay.js 3099 2>"$tmp/ref.log" & rpid=$!
sleep 1
echo "== cpsd ($scenario)"
node bench.js --url ws://127.0.0.1:3098/cryptpad_websocket --scenario "$scenario" --pid $cpid --label cpsd "$@" || true
echo "== chainpad-server relay ($scenario)"
node bench.js --url ws://127.0.0.1:3099/cryptpad_websocket --scenario "$scenario" --pid $rpid --label chainpad-server "$@" || true
