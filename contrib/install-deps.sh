#!/usr/bin/env bash
# Installs what cpsd needs to build, run and test on Debian 12 (as root).
# Idempotent: packages already present are skipped quickly by apt.
# nginx-light and openssl are for the test of contrib/'s nginx configurations
# (tests/nginx/test_nginx.sh runs only `nginx -t`: the nginx service is not
# needed; on a machine with systemd the package starts it on port 80, and
# `systemctl disable --now nginx` stops it if that port is wanted elsewhere).
set -euo pipefail
PKGS="build-essential cmake pkg-config libuv1-dev libwebsockets-dev libwebsockets-evlib-uv \
liblua5.4-dev libjansson-dev libcmocka-dev libsodium-dev \
nginx-light openssl"
# promtool checks /metrics (tests/integration/metrics.test.js); Debian ships it
# only in the prometheus package (a server too: on a machine with systemd it
# starts on port 9090; `systemctl disable --now prometheus` stops it).
# systemd-analyze verifies the units (tests/package/test_package.sh).
PKGS="$PKGS prometheus systemd"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi
# Node.js runs the integration tests (the real CryptPad client libraries).
# Use the machine's node if it has one (a newer nodejs package may ship npm
# itself and conflict with Debian's npm package).
if ! command -v node >/dev/null 2>&1; then
    apt-get install -y -q --no-install-recommends nodejs npm
fi
