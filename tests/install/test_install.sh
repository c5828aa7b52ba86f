#!/bin/sh
# test_install.sh - `cmake --install` gives a server that runs and what an
# out-of-tree plugin needs (docs/operator-guide.md, "Installing"):
#  1. the installed bin/cpsd, started from another directory, finds every
#     default plugin under lib/cpsd/plugins and its scripts under
#     share/cpsd/lua (not the build or source tree), and answers HTTP;
#  2. an install staged with DESTDIR checks its configuration as OK;
#  3. the ABI headers under include/cpsd, a cpsd.pc that pkg-config resolves
#     (jansson's flags included), and a C file including <cps.h> compiles.
# usage: test_install.sh BUILD_DIR [CC] [PKG_CONFIG]
set -eu
build=$(cd "$1" && pwd -P)
cc=${2:-cc}
pkgconfig=${3:-pkg-config}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpsd-install-XXXXXX")
tmp=$(cd "$tmp" && pwd -P)   # the binary sees its own path with symlinks resolved
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*" >&2; [ -f "$tmp/run/cpsd.log" ] && tail -n 40 "$tmp/run/cpsd.log" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log" >&2; fail "cmake --install"; }

# ---- 1. the installed server runs from anywhere ----
prefix=$tmp/prefix
for f in bin/cpsd lib/cpsd/plugins/front.so share/cpsd/lua/examples/example_rpc.lua; do
    [ -f "$prefix/$f" ] || fail "$f not installed"
done
mkdir -p "$tmp/run"
cat >"$tmp/run/cpsd.lua" <<LUA
return {
    listen = { host = "127.0.0.1", port = 0, extra_ports = {} },
    data_dir = "$tmp/run/data",
    lua_scripts_add = { "examples/example_rpc.lua" },
}
LUA
cd "$tmp/run"
"$prefix/bin/cpsd" --config cpsd.lua >cpsd.log 2>&1 &
pid=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' cpsd.log | head -n 1)
    grep -q "ready" cpsd.log && [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the installed cpsd exited during startup"
    sleep 0.1
done
grep -q "ready" cpsd.log || fail "the installed cpsd did not get ready"
for p in front core storage storage-fs rpc-channel rpc-pin blob web auth; do
    grep -q "loaded plugin '$p'" cpsd.log || fail "plugin $p not loaded"
done
# from the install, not from the build tree
grep "$prefix/lib/cpsd/plugins/front.so" "/proc/$pid/maps" >/dev/null || fail "front.so not mapped from $prefix/lib/cpsd/plugins"
if grep -q "$build" "/proc/$pid/maps"; then fail "the installed cpsd maps files of the build tree"; fi
grep -q "loaded Lua script $prefix/share/cpsd/lua/examples/example_rpc.lua" cpsd.log \
    || fail "the example script was not loaded from $prefix/share/cpsd/lua"
curl -sf "http://127.0.0.1:$port/metrics" | grep -q "^cpsd_" || fail "GET /metrics on port $port"
curl -sf "http://127.0.0.1:$port/api/config" >/dev/null || fail "GET /api/config on port $port"
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "cpsd exited $rc after SIGTERM"
cd "$tmp"
echo "installed cpsd ran from $prefix (port $port)"

# ---- 2. a staged install (DESTDIR) finds everything it is told to load ----
DESTDIR=$tmp/stage cmake --install "$build" --prefix /usr >"$tmp/stage.log" 2>&1 \
    || { cat "$tmp/stage.log" >&2; fail "DESTDIR cmake --install"; }
for f in usr/bin/cpsd usr/lib/cpsd/plugins/front.so usr/share/cpsd/lua/examples/example_rpc.lua; do
    [ -f "$tmp/stage/$f" ] || fail "DESTDIR: $f not installed"
done
"$tmp/stage/usr/bin/cpsd" --check-config "$tmp/run/cpsd.lua" || fail "DESTDIR: --check-config"

# ---- 3. what an out-of-tree plugin needs ----
for f in include/cpsd/cps.h include/cpsd/cps_errors.h include/cpsd/cps_storage.h lib/pkgconfig/cpsd.pc; do
    [ -f "$tmp/prefix/$f" ] || fail "$f not installed"
done

PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
cflags=$("$pkgconfig" --cflags cpsd) || fail "pkg-config --cflags cpsd"
echo "pkg-config --cflags cpsd: $cflags"
# The installed headers, wherever the prefix was put (the .pc is relocatable).
inc=$(cd "$tmp/prefix/include/cpsd" && pwd -P)
found=no
for f in $cflags; do
    case $f in -I*) [ -d "${f#-I}" ] && [ "$(cd "${f#-I}" && pwd -P)" = "$inc" ] && found=yes ;; esac
done
[ $found = yes ] || fail "pkg-config --cflags cpsd does not name $inc"
"$pkgconfig" --modversion cpsd >/dev/null || fail "pkg-config --modversion cpsd"
[ -d "$("$pkgconfig" --variable=plugindir cpsd)" ] || fail "plugindir is not the installed plugins directory"

cat >"$tmp/hello.c" <<'C'
/* A plugin's source sees the ABI through <cps.h> alone. */
#include <cps.h>

static const cps_api *api;

int hello_keep(const cps_api *a, json_t *args)
{
    api = a;
    return json_is_object(args) ? CPS_OK : CPS_EINVAL;
}
C
# shellcheck disable=SC2086  # cflags is a list of flags
"$cc" -std=c11 -Wall -Werror -fsyntax-only $cflags "$tmp/hello.c" || fail "hello.c does not compile against <cps.h>"
"$cc" -std=c11 -shared -fPIC $cflags "$tmp/hello.c" -o "$tmp/hello.so" || fail "hello.so does not build"
echo "install OK"
