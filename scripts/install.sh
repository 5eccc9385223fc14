#!/usr/bin/env bash
# Builds libhakmem.so (release) and installs it with its header and
# pkg-config file:
#
#   scripts/install.sh PREFIX       # e.g. /usr/local, or $HOME/.local
#
#   PREFIX/lib/libhakmem.so
#   PREFIX/include/hakmem.h
#   PREFIX/lib/pkgconfig/hakmem.pc
#
# Then: cc prog.c $(pkg-config --cflags --libs hakmem)   (link with it), or
#       LD_PRELOAD=PREFIX/lib/libhakmem.so prog          (any program).
# Extra cargo arguments may follow PREFIX (e.g. --features hakmem-core/hardened).
set -euo pipefail
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 PREFIX [cargo build arguments...]" >&2
  exit 2
fi
prefix=$1
shift
cd "$(dirname "$0")/.."
root=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
cargo build --release -p hakmem-malloc "$@"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$root/target")
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
prefix=$(cd "$prefix" && pwd)
install -m 0755 "$target_dir/release/libhakmem.so" "$prefix/lib/libhakmem.so"
install -m 0644 hakmem-malloc/include/hakmem.h "$prefix/include/hakmem.h"
cat > "$prefix/lib/pkgconfig/hakmem.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: hakmem
Description: hakmem memory allocator (malloc replacement with exact statistics)
Version: $version
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lhakmem
Cflags: -I\${includedir}
PC
echo "installed hakmem $version in $prefix (lib/libhakmem.so, include/hakmem.h, lib/pkgconfig/hakmem.pc)"
