#!/usr/bin/env bash
# memory.sh — peak memory of big inputs, and how fast --resume gets going over a big results file.
#
# Measures (median of ROUNDS, default 3, except the long stub run: RUNS_1M, default 1):
#   1. peak RSS (/usr/bin/time %M) of `join --dry-run --server-name bench.local` over 1,000,000 rows;
#   2. peak RSS and wall time of a real 1,000,000-row join against the nginx stub (default -j 8, -q);
#   3. --resume over a 1,000,000-line results file (1,000,001-row input): wall time of a run that has
#      exactly one row left (the last row of the input, so the whole input is scanned before it is
#      sent: an upper bound on time-to-first-request), and of a run with every row done (load only).
# Targets: <= 50 MB peak RSS; --resume starts sending within 2 s.
#
# Run:    bash bench/memory.sh
# Needs:  cargo; installs nginx, time (apt) if missing. Traffic only to 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=1000000
ROUNDS=${ROUNDS:-3}
RUNS_1M=${RUNS_1M:-1}
build
IN=$WORK/join-$N.csv
IN1=$WORK/join-$((N + 1)).csv
gen_input "$IN" "$N" 100
gen_input "$IN1" $((N + 1)) 100
# results_file FILE ROWS: every row 1..ROWS of gen_input's input recorded as ok.
results_file() {
    [[ -s $1 && $(wc -l <"$1") -eq $(($2 + 1)) ]] && return 0
    awk -v n="$2" 'BEGIN {
        print "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,user,room"
        for (i = 1; i <= n; i++)
            printf "%d,join @u%d:bench.local !room%d,ok,200,,,1,2026-01-01T00:00:00.000Z,3,@u%d:bench.local,!room%d\n", i, i, i % 100, i, i % 100
    }' >"$1"
}
RES_MOST=$WORK/resume-most.results.csv; results_file "$RES_MOST" "$N"
RES_ALL=$WORK/resume-all.results.csv;   results_file "$RES_ALL" $((N + 1))
trap stub_stop EXIT
stub_start
export SYNBATCH_TOKEN=bench
TAB=$WORK/memory.$$

# row LABEL RUNS CHECK CMD... — runs CMD RUNS times (after `eval "$PREP"`), keeps wall and RSS.
# once CHECK CMD... — one measurement after `eval "$PREP"`: prints "wall rss-KB other-CPU-s".
once() {
    local check=$1 b0 s0 wall user sys rss code; shift
    eval "${PREP:-:}"
    wait_quiet
    b0=$(busy_secs); s0=$(stub_secs)
    read -r wall user sys rss code <<<"$(measure "$TAB.t" "$@")"
    local b1 s1; b1=$(busy_secs); s1=$(stub_secs)
    [[ $code == 0 ]] && eval "$check" || { log "exit $code / check failed: $*"; cat "$TAB.t.log" >&2; return 1; }
    awk -v w="$wall" -v m="$rss" -v b="$b1" -v b0="$b0" -v s="$s1" -v s0="$s0" -v u="$user" -v y="$sys" \
        'BEGIN { printf "%s %s %.1f\n", w, m, b - b0 - (s - s0) - u - y }'
}
# row LABEL RUNS CHECK CMD... — RUNS undisturbed measurements, then one line of the table.
row() {
    local label=$1 runs=$2 r line; shift 2
    for r in $(seq "$runs"); do
        line=$(undisturbed once "$@")
        log "$label: $line (wall s, peak RSS KB, CPU s other processes took meanwhile)"
        echo "$line" >>"$TAB.$label"
    done
    printf '| %s | %s | %.1f | %s |\n' "$label" "$(awk '{ print $1 }' "$TAB.$label" | median)" \
        "$(awk '{ print $2 / 1024 }' "$TAB.$label" | median)" "$(awk '{ printf "%s/%.1f/%s%s ", $1, $2 / 1024, $3, $4 ? "(disturbed)" : "" }' "$TAB.$label")" >>"$TAB.md"
}

OUT=$WORK/mem.results.csv
PREP= row dry-run-1M "$ROUNDS" 'grep -q "1000000 rows -> 1000000 requests" "$TAB.t.log"' \
    "$SYNBATCH" join "$IN" --dry-run --server-name bench.local
PREP='rm -f "$OUT"' row stub-run-1M-j8 "$RUNS_1M" '[[ $(grep -c ",ok,200," "$OUT") == $N ]]' \
    "$SYNBATCH" join "$IN" --homeserver "$STUB_URL" -q -o "$OUT"
PREP='cp "$RES_MOST" "$OUT"' row resume-1-left "$ROUNDS" 'grep -q "join: 1 rows.*1000000 skipped" "$TAB.t.log" && [[ $(tail -n1 "$OUT" | cut -d, -f1,3) == "$((N + 1)),ok" ]]' \
    "$SYNBATCH" join "$IN1" --homeserver "$STUB_URL" --resume -q -o "$OUT"
PREP='cp "$RES_ALL" "$OUT"' row resume-0-left "$ROUNDS" 'grep -q "join: 0 rows.*1000001 skipped" "$TAB.t.log"' \
    "$SYNBATCH" join "$IN1" --homeserver "$STUB_URL" --resume -q -o "$OUT"

echo "# memory: 1,000,000-row input (1,000,001 for --resume); median of $ROUNDS (stub run: $RUNS_1M); $(machine_info)"
echo "| run | wall s | peak RSS MB | all runs (wall s / MB / CPU s other processes took meanwhile) |"
echo "|---|---|---|---|"
cat "$TAB.md"
tail -n2 "$TAB.t.log" | sed 's/^/last run said: /'
rm -f "$TAB".*
