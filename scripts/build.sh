#!/usr/bin/env bash
# Configures (first time only) and builds one CMake preset into build/<preset>.
#
#   scripts/build.sh [preset] [extra `cmake --build` args]    preset: release (default), debug,
#                                                            asan, cpu (release without CUDA)
#
# The CUDA backend is built when /usr/local/cuda/bin/nvcc exists (and the preset allows it);
# ccache is used when installed. Set TUNE_JOBS to limit parallel compile jobs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

preset=release
if (($# > 0)) && [[ "$1" != -* ]]; then
  preset=$1
  shift
fi
case "$preset" in
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

build_dir=build/$preset
if [[ ! -f "$build_dir/CMakeCache.txt" || ! -f "$build_dir/build.ninja" ]]; then
  echo "+ cmake --preset $preset"
  cmake --preset "$preset"
fi

cmd=(cmake --build --preset "$preset")
[[ -n "${TUNE_JOBS:-}" ]] && cmd+=(--parallel "$TUNE_JOBS")
cmd+=("$@")
echo "+ ${cmd[*]}"
"${cmd[@]}"
