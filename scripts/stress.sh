#!/usr/bin/env bash
# `make stress`: the whole suite (`make test`) 5 times in a row, then once pinned to one CPU core
# (taskset -c 0), then once beside a CPU hog. Prints one line per run (mode, pass/FAIL, pytest's
# summary line, seconds, log file) and exits 1 if any run failed. Full logs: artifacts/stress/.
# STRESS_RUNS=N changes the number of plain runs.
set -u
cd "$(dirname "$0")/.."

MAKE_CMD=${MAKE:-make}
RUNS=${STRESS_RUNS:-5}
LOG_DIR=artifacts/stress
mkdir -p "$LOG_DIR"
failed=0
hog_pid=""

stop_hog() {
    if [ -n "$hog_pid" ]; then
        kill "$hog_pid" 2>/dev/null
        wait "$hog_pid" 2>/dev/null
        hog_pid=""
    fi
}
# The hog must not outlive the script, whatever happens to the runs or to the script itself.
trap stop_hog EXIT
trap 'stop_hog; exit 130' INT TERM

# run MODE COMMAND...: run one whole suite, print its line.
run() {
    local mode=$1
    shift
    local log="$LOG_DIR/$mode.log" started=$SECONDS status=pass summary
    "$@" >"$log" 2>&1 || status=FAIL
    [ "$status" = pass ] || failed=1
    summary=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$log" | tail -n 1 |
        sed -E 's/^=+ //; s/ =+$//')
    printf '%-10s %-4s  %-58s %5ss  %s\n' "$mode" "$status" \
        "${summary:-no pytest summary: lint/typecheck failed? see the log}" \
        "$((SECONDS - started))" "$log"
}

for i in $(seq 1 "$RUNS"); do
    run "run-$i" "$MAKE_CMD" test
done

if command -v taskset >/dev/null; then
    run one-core taskset -c 0 "$MAKE_CMD" test
else
    echo "one-core   FAIL  taskset not found (util-linux)"
    failed=1
fi

python3 -c 'while True: pass' &
hog_pid=$!
run cpu-hog "$MAKE_CMD" test
stop_hog

exit "$failed"
