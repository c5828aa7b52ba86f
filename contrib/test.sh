#!/usr/bin/env bash
# Install what the tests need, build cpsd with AddressSanitizer and
# UndefinedBehaviorSanitizer, and run every test (cmocka units and the Node
# integration suite on the real CryptPad client libraries) through ctest.
# The output ends with ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/install-deps.sh
build=${CPS_TEST_BUILD:-build-test}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCPS_SANITIZE=ON -DCPS_TESTS=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
# Leak checking on; lws's own allocations on exit are freed by the double
# context destroy (docs/libraries.md G6), so none are expected.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=4:allocator_release_to_os_interval_ms=100}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build" --output-on-failure --timeout 600
