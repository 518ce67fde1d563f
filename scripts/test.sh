#!/usr/bin/env bash
# Builds (scripts/build.sh) and runs the tests with ctest; exits non-zero when any test fails.
#
#   scripts/test.sh [preset] [extra ctest args]    preset: release (default: every test except
#                                                 the `gpu` label), debug, asan, cpu, or gpu
#                                                 (only the `gpu` label, on a GPU machine)
#   scripts/test.sh release -R golden             only the golden cases
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

preset=release
if (($# > 0)) && [[ "$1" != -* ]]; then
  preset=$1
  shift
fi
case "$preset" in
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  gpu) build_preset=release ;;  # the gpu test preset runs the release build's gpu-labelled tests
  *) build_preset=$preset ;;
esac

scripts/build.sh "$build_preset"

log=build/$build_preset/ctest.log
cmd=(ctest --preset "$preset" --no-tests=error "$@")
echo "+ ${cmd[*]}"
status=0
"${cmd[@]}" 2>&1 | tee "$log" || status=$?

# ctest's summary ("100% tests passed, 0 tests failed out of 42") scrolls away above the list of
# failures and the timing; repeat it as the last line.
summary=$(grep -E '^[0-9]+% tests passed' "$log" | tail -n 1 || true)
echo
echo "${summary:-ctest printed no summary (exit $status); see $log}"
exit "$status"
