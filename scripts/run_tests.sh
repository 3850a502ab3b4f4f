#!/usr/bin/env bash
# Run the test suite once per database named in the arguments (sqlite, postgresql or a
# postgresql:// URL), side by side: much of a pass is spent waiting on the processes its tests
# start (workers, torchrun, Redis, PostgreSQL, Chromium), so two passes together take far less
# than one after the other. TEST_PARALLEL=0 runs them one after the other instead.
#
# Each pass writes its own log (in $TEST_LOG_DIR when set, kept; else in a temporary folder,
# removed at the end); a pass's output is printed when it ends. Extra pytest arguments come from $PYTEST_ARGS. The exit status is
# non-zero when any pass failed; every pass runs to its end either way, so one run shows every
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."

python=${VENV:-.venv}/bin/python
if [ -n "${TEST_LOG_DIR:-}" ]; then
  log_dir=$TEST_LOG_DIR
  mkdir -p "$log_dir"
else  # printed below, so a folder of our own is removed at the end
  log_dir=$(mktemp -d -t realfake-test-logs.XXXXXX)
  trap 'rm -rf "$log_dir"' EXIT
fi
# Say how much room the temporary folder has: a full disk fails tests far from its cause
# (an OSError in an import, a torch.save that stops mid-file); both passes side by side took 0.7 GB
# there at their peak (Intel AMX machine, measured with du every 15 s).
tmp_root=${TMPDIR:-/tmp}
free_mb=$(df -Pm "$tmp_root" 2>/dev/null | awk 'NR == 2 {print $4}')
if [ -n "$free_mb" ]; then
  echo "==> $free_mb MB free in $tmp_root"
  [ "$free_mb" -ge 2048 ] || echo "warning: under 2 GB free in $tmp_root; tests may fail with 'No space left on device'" >&2
fi
parallel=${TEST_PARALLEL:-1}
databases=("$@")
[ ${#databases[@]} -gt 0 ] || databases=(sqlite)

run_pass() {  # database, log file
  local started=$SECONDS status
  # shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
  REALFAKE_TEST_DATABASE=$1 "$python" -m pytest -q ${PYTEST_ARGS:-} >"$2" 2>&1
  status=$?
  echo "(pass on ${1%%://*}: exit $status after $((SECONDS - started)) s)" >>"$2"
  return $status
}

declare -A pids logs
status=0
for database in "${databases[@]}"; do
  name=${database%%://*}
  logs[$database]="$log_dir/test-$name.log"
  if [ "$parallel" = 1 ] && [ ${#databases[@]} -gt 1 ]; then
    echo "==> test suite on $name (log: ${logs[$database]})"
    run_pass "$database" "${logs[$database]}" &
    pids[$database]=$!
  else
    echo "==> test suite on $name"
    run_pass "$database" "${logs[$database]}" || status=1
    cat "${logs[$database]}"
  fi
done
for database in "${databases[@]}"; do
  [ -n "${pids[$database]:-}" ] || continue
  wait "${pids[$database]}" || status=1
  echo
  echo "==> test suite on ${database%%://*}"
  cat "${logs[$database]}"
done
exit $status
