#!/usr/bin/env bash
# Soak test of cpsd (issue 12; not CI): mixed load from soak.js for a given
# time while the server's RSS is sampled every second; prints the RSS at
# start, its minimum, maximum and end.  Runs at low priority.
#   contrib/soak/soak.sh [SECONDS (1800)] [BUILD_DIR (build)]
# Needs node and contrib/bench's node_modules (npm install there).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-1800}
build=${2:-$root/build}
port=${SOAK_PORT:-3097}
[ -d "$root/contrib/bench/node_modules" ] || (cd "$root/contrib/bench" && npm install --no-audit --no-fund --silent)
tmp=$(mktemp -d)
cpid=
trap '[ -n "$cpid" ] && kill $cpid 2>/dev/null; rm -rf "$tmp"' EXIT
cat > "$tmp/soak.lua" <<LUA
return { listen = { host = "127.0.0.1", port = $port, extra_ports = {} }, data_dir = "$tmp/data", log = { level = "warn" } }
LUA
nice -n 10 "$build/cpsd" --config "$tmp/soak.lua" 2>"$tmp/cpsd.log" & cpid=$!
sleep 1
rss() { awk '/^VmRSS/ { print $2 }' /proc/$cpid/status 2>/dev/null || echo 0; }
out=${SOAK_RSS:-$tmp/rss.csv}
( while kill -0 $cpid 2>/dev/null; do echo "$(date +%s),$(rss)"; sleep 1; done ) > "$out" &
sampler=$!
NODE_PATH="$root/contrib/bench/node_modules" nice -n 10 node "$here/soak.js" --url "ws://127.0.0.1:$port/cryptpad_websocket" --seconds "$secs" || echo "soak.js failed: $?"
kill $sampler 2>/dev/null || true
alive=yes; kill -0 $cpid 2>/dev/null || alive=no
awk -F, -v alive=$alive 'NR == 1 { s = $2; mn = $2; mx = $2 } { if ($2 < mn) mn = $2; if ($2 > mx) mx = $2; e = $2; n++ }
  END { printf "RSS kB: start %d min %d max %d end %d (%d samples); server alive: %s\n", s, mn, mx, e, n, alive }' "$out"
grep -c -i -E "ERROR|AddressSanitizer" "$tmp/cpsd.log" | sed 's/^/server log error lines: /' || true
