#!/usr/bin/env bash
# The command line's own behaviour (apps/qforge.cpp), run by ctest: what a user typing a
# wrong command sees, and that the program exits non-zero for it.
#   cli_test.sh QFORGE_BINARY
set -uo pipefail
qforge=$1
failures=0
expect() {  # expect STATUS PATTERN -- ARGS...: exit status and a line of stderr matching PATTERN
  local status=$1 pattern=$2
  shift 3
  local output code
  output=$("$qforge" "$@" 2>&1 >/dev/null)
  code=$?
  if [[ $code != "$status" ]] || ! grep -qE -- "$pattern" <<<"$output"; then
    echo "FAILED: qforge $* -> exit $code, stderr: $output (wanted exit $status and /$pattern/)"
    failures=$((failures + 1))
  fi
}
expect 1 'unknown command "trian" \(commands: train, qat, ptq,' -- trian configs/lenet.json
expect 1 'unknown command "exprot"' -- exprot
expect 0 '' -- --help
((failures == 0)) && echo "cli: all checks passed"
exit $((failures > 0))
