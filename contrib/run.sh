#!/usr/bin/env bash
# Quick start: install what cpsd needs, build it, and run it on the embedded
# default configuration (127.0.0.1:3000, data under ./data). Extra arguments
# go to cpsd (e.g. --config FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPS_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/cpsd "$@"
