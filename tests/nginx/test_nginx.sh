#!/bin/sh
# test_nginx.sh - the nginx configurations shipped in contrib/ pass `nginx -t`
# (docs/operations.md §1): nginx-cryptpad.conf (one process behind TLS, its
# certificate paths replaced by a throwaway self-signed certificate) and
# nginx-cluster.conf.  Each file is included in the http {} block of a
# minimal nginx.conf, as Debian's /etc/nginx/nginx.conf includes
# sites-enabled/.  Nothing is started and nothing under /var or /etc is
# used: the prefix, pid file and error log are in a temporary directory.
# Skips (exit 77) when nginx or openssl is not installed
# (contrib/install-deps.sh installs nginx-light).
# usage: test_nginx.sh SOURCE_DIR
set -eu
src=$(cd "$1" && pwd -P)

for tool in nginx openssl; do
    if ! command -v "$tool" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ]; then
        echo "SKIP: $tool not found (contrib/install-deps.sh installs it)"
        exit 77
    fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpsd-nginx-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=cryptpad.example \
    -keyout "$tmp/privkey.pem" -out "$tmp/fullchain.pem" >"$tmp/openssl.log" 2>&1 \
    || { cat "$tmp/openssl.log" >&2; fail "openssl could not make a certificate"; }

# check NAME FILE: nginx -t on FILE inside a minimal main configuration.
check() {
    name=$1
    mkdir -p "$tmp/$name/logs"
    # every certificate path of the file points at the throwaway pair
    sed -e "s#/etc/letsencrypt/live/[^/;]*/fullchain\.pem#$tmp/fullchain.pem#g" \
        -e "s#/etc/letsencrypt/live/[^/;]*/privkey\.pem#$tmp/privkey.pem#g" \
        "$2" >"$tmp/$name/site.conf"
    if grep -v '^[[:space:]]*#' "$tmp/$name/site.conf" | grep -q '/etc/letsencrypt'; then fail "$name: a certificate path left"; fi
    cat >"$tmp/$name/nginx.conf" <<CONF
events { worker_connections 64; }
http {
    access_log off;
    include $tmp/$name/site.conf;
}
CONF
    if ! "$NGINX" -t -p "$tmp/$name" -c "$tmp/$name/nginx.conf" \
        -g "pid $tmp/$name/nginx.pid; error_log $tmp/$name/logs/error.log;" >"$tmp/$name/out" 2>&1; then
        cat "$tmp/$name/out" >&2
        fail "nginx -t refused $2"
    fi
    # nginx -t passes with warnings (a duplicate, a deprecated directive):
    # the shipped files should have none
    if grep -q '\[warn\]' "$tmp/$name/out"; then cat "$tmp/$name/out" >&2; fail "nginx -t warns on $2"; fi
    grep -q 'test is successful' "$tmp/$name/out" || { cat "$tmp/$name/out" >&2; fail "no success line for $2"; }
    echo "ok: nginx -t accepts $2"
}

check single "$src/contrib/nginx-cryptpad.conf"
check cluster "$src/contrib/nginx-cluster.conf"

# What docs/operations.md promises of the single-process file.
f=$src/contrib/nginx-cryptpad.conf
for want in 'server_name cryptpad.example;' 'server_name sandbox.cryptpad.example;' \
    'proxy_pass http://cpsd_main;' 'proxy_pass http://cpsd_sandbox;' \
    'server 127.0.0.1:3000;' 'server 127.0.0.1:3001;' \
    'location = /cryptpad_websocket' 'proxy_set_header Upgrade $http_upgrade;' \
    'proxy_read_timeout 3600s;' 'client_max_body_size' 'ssl_certificate '; do
    grep -qF "$want" "$f" || fail "nginx-cryptpad.conf lacks: $want"
done
echo "ok: nginx-cryptpad.conf has both origins, the websocket upgrade and TLS"
