#!/usr/bin/env bash
# memory.sh — peak memory of big inputs, and how fast --resume gets going over a big results file.
#
# Measures (median of ROUNDS, default 3; the long stub run RUNS_1M times, default 1):
#   1. peak RSS (/usr/bin/time %M) of `join --dry-run --server-name bench.local`, 1,000,000 rows;
#   2. peak RSS and wall time of a real 1,000,000-row join against the nginx stub (default -j 8, -q);
#   3. --resume of a 1,000,001-row input over a 1,000,000-line results file (status ok):
#        resume-last-left   the one row left is the input's last: the whole input is scanned first
#        resume-first-left  the one row left is the input's first
#        resume-none-left   every row done: loading and scanning only
#      with the wall time to exit and, from the stub's access log, the time from start until the
#      join request arrived.
# Targets: <= 50 MB peak RSS; --resume starts sending within 2 s.
#
# Run:    bash bench/memory.sh
# Needs:  cargo; installs nginx, curl, time (apt) if missing. Traffic only to 127.0.0.1.
# Inputs and results files (~100 MB each) are generated once into target/bench/.
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
# results_file FILE FIRST LAST: rows FIRST..LAST of gen_input's input recorded as ok.
results_file() {
    [[ -s $1 && $(wc -l <"$1") -eq $(($3 - $2 + 2)) ]] && return 0
    awk -v a="$2" -v n="$3" 'BEGIN {
        print "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,user,room"
        for (i = a; i <= n; i++)
            printf "%d,join @u%d:bench.local !room%d,ok,200,,,1,2026-01-01T00:00:00.000Z,3,@u%d:bench.local,!room%d\n", i, i, i % 100, i, i % 100
    }' >"$1"
}
RES_LAST=$WORK/resume-last-left.results.csv;   results_file "$RES_LAST" 1 "$N"
RES_FIRST=$WORK/resume-first-left.results.csv; results_file "$RES_FIRST" 2 $((N + 1))
RES_NONE=$WORK/resume-none-left.results.csv;   results_file "$RES_NONE" 1 $((N + 1))
trap stub_stop EXIT
stub_start
export SYNBATCH_TOKEN=bench
TAB=$WORK/memory.$$
OUT=$WORK/mem.results.csv

# once CHECK CMD... — one measurement after `eval "$PREP"`; prints
# "wall-s peak-RSS-KB first-join-after-s other-CPU-s" (first join: "-" if none reached STUB_LOG).
once() {
    local check=$1 b0 s0 b1 s1 t0 wall user sys rss code first; shift
    eval "${PREP:-:}"
    : >"$STUB_LOG"
    wait_quiet
    b0=$(busy_secs); s0=$(stub_secs); t0=$(date +%s.%N)
    read -r wall user sys rss code <<<"$(measure "$TAB.t" "$@")"
    b1=$(busy_secs); s1=$(stub_secs)
    [[ $code == 0 ]] && eval "$check" || { log "exit $code / check failed: $*"; cat "$TAB.t.log" >&2; return 1; }
    first=$(awk -v t0="$t0" '$2 == "POST" { printf "%.2f", $1 - t0; exit }' "$STUB_LOG")
    awk -v w="$wall" -v m="$rss" -v f="${first:--}" -v b="$b1" -v b0="$b0" -v s="$s1" -v s0="$s0" -v u="$user" -v y="$sys" \
        'BEGIN { printf "%s %s %s %.1f\n", w, m, f, b - b0 - (s - s0) - u - y }'
}
# row LABEL RUNS CHECK CMD... — RUNS undisturbed measurements, then one line of the table.
row() {
    local label=$1 runs=$2 r line first; shift 2
    for r in $(seq "$runs"); do
        line=$(undisturbed once "$@")
        log "$label: $line (wall s, peak RSS KB, first join after s, CPU s of other processes meanwhile)"
        echo "$line" >>"$TAB.$label"
    done
    first=$(awk '$3 != "-" { print $3 }' "$TAB.$label" | median)
    printf '| %s | %s | %.1f | %s | %s |\n' "$label" "$(awk '{ print $1 }' "$TAB.$label" | median)" \
        "$(awk '{ print $2 / 1024 }' "$TAB.$label" | median)" "${first:--}" \
        "$(awk '{ printf "%s/%.1f/%s/%s%s ", $1, $2 / 1024, $3, $4, $5 ? "(disturbed)" : "" }' "$TAB.$label")" >>"$TAB.md"
}

PREP= row dry-run-1M "$ROUNDS" 'grep -q "1000000 rows -> 1000000 requests" "$TAB.t.log"' \
    "$SYNBATCH" join "$IN" --dry-run --server-name bench.local
PREP='rm -f "$OUT"' row stub-run-1M-j8 "$RUNS_1M" '[[ $(grep -c ",ok,200," "$OUT") == $N ]]' \
    "$SYNBATCH" join "$IN" --homeserver "$STUB_URL" -q -o "$OUT"
for left in last first none; do
    res=$WORK/resume-$left-left.results.csv
    case $left in
    none) check='grep -q "join: 0 rows.*1000001 skipped" "$TAB.t.log"' ;;
    *) check='grep -q "join: 1 rows.*1000000 skipped" "$TAB.t.log" && [[ $(tail -n1 "$OUT" | cut -d, -f3) == ok ]]' ;;
    esac
    PREP="cp '$res' \"\$OUT\"" row "resume-$left-left" "$ROUNDS" "$check" \
        "$SYNBATCH" join "$IN1" --homeserver "$STUB_LOGGED_URL" --resume -q -o "$OUT"
done

echo "# memory: 1,000,000-row input (1,000,001 for --resume); median of $ROUNDS (stub run: $RUNS_1M); $(machine_info)"
echo "| run | wall s | peak RSS MB | first join request after s | all runs (wall s / MB / first join s / CPU s of other processes meanwhile) |"
echo "|---|---|---|---|---|"
cat "$TAB.md"
rm -f "$TAB".*
