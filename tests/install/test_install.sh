#!/bin/sh
# test_install.sh - `cmake --install` gives what an out-of-tree plugin needs:
# the ABI headers under include/cpsd, a cpsd.pc that pkg-config resolves
# (jansson's flags included), and a C file including <cps.h> compiles.
# usage: test_install.sh BUILD_DIR [CC] [PKG_CONFIG]
set -eu
build=$1
cc=${2:-cc}
pkgconfig=${3:-pkg-config}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpsd-install-XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 \
    || { cat "$tmp/install.log" >&2; fail "cmake --install"; }

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
