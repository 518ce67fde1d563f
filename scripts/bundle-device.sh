#!/usr/bin/env bash
# Makes a build folder runnable on the GPU machine (../shared/device.md), which lacks some of the
# shared libraries tune links here: copies them next to the binaries, where the $ORIGIN rpath
# finds them, and writes BUILD_COMMIT, the commit the binaries were built from (the device's copy
# of the tree may carry older git metadata; the bench scripts print this file). Carry the
# folder's binaries and these files with the device tool.
#
#   scripts/bundle-device.sh [BUILD_DIR]    (default build/release)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${1:-}" in -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
dir=${1:-build/release}
# simdjson and cpp-httplib: Debian ships only shared libraries and the GPU machine has neither.
for lib in libsimdjson.so.14 libcpp-httplib.so.0.11; do
  src=$(ldd "$dir/tune" | awk -v l="$lib" '$1 == l { print $3 }')
  [[ -n "$src" ]] || { echo "bundle-device: $dir/tune does not link $lib" >&2; exit 1; }
  if [[ $src -ef $dir/$lib ]]; then  # bundled already: ldd found the copy
    echo "already there: $dir/$lib"
    continue
  fi
  cp -L "$src" "$dir/$lib"
  echo "copied $src -> $dir/$lib"
done
git describe --always --dirty >"$dir/BUILD_COMMIT"
echo "wrote $dir/BUILD_COMMIT: $(cat "$dir/BUILD_COMMIT")"
