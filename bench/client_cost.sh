#!/usr/bin/env bash
# client_cost.sh — what `synbatch join` itself costs, against an instant local stub.
#
# Measures: end-to-end rows/s and the tool's own CPU (user+sys, ms per row) for a 200,000-row
# join (100 rooms) at -j 64 and -j 8 (the default), no --rate, -q; and beside it the HTTP
# ceiling of the same stub on this machine: wrk -t2 -c64 -d10s (and -c8 -d5s) POSTing the join
# path. Each is run ROUNDS times (default 3), interleaved, and the median reported.
# Targets: >= 20,000 rows/s, <= 0.05 ms CPU per row.
#
# Run:    bash bench/client_cost.sh            (ROUNDS=1 for a quick look)
# Needs:  cargo; installs nginx, wrk, time (apt) if missing. Traffic only to 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROWS=200000
ROUNDS=${ROUNDS:-3}
need wrk:wrk /usr/bin/time:time
build
INPUT=$WORK/join-$ROWS.csv
gen_input "$INPUT" "$ROWS" 100
trap stub_stop EXIT
stub_start
export SYNBATCH_TOKEN=bench

run_tool() { # J ROUND -> "wall cpu other" ; checks every row came back ok
    local j=$1 r=$2 res=$WORK/cc-j$1.results.csv b0 s0 b1 s1 wall user sys rss code
    rm -f "$res"
    wait_quiet
    b0=$(busy_secs); s0=$(stub_secs)
    read -r wall user sys rss code < <(measure "$WORK/cc-j$j-$r.time" \
        "$SYNBATCH" join "$INPUT" --homeserver "$STUB_URL" -j "$j" -q -o "$res")
    b1=$(busy_secs); s1=$(stub_secs)
    local ok; ok=$(grep -c ',ok,200,' "$res" || true)
    [[ $code == 0 && $ok == "$ROWS" ]] || { log "j$j: exit $code, $ok ok rows"; cat "$WORK/cc-j$j-$r.time.log" >&2; exit 1; }
    awk -v w="$wall" -v c="$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" -v b="$b1" -v b0="$b0" \
        -v s="$s1" -v s0="$s0" 'BEGIN { print w, c, b - b0 - c - (s - s0) }'
}
run_wrk() { # CONNS SECS -> "secs requests/s wrk's-own-CPU-ms-per-request other-CPU-s"
    local t=$WORK/cc-wrk.time b0 s0
    wait_quiet
    b0=$(busy_secs); s0=$(stub_secs)
    /usr/bin/time -o "$t" -f '%U %S' wrk -t2 -c"$1" -d"$2"s -s "$(dirname "$0")/join.lua" "$STUB_URL" >"$t.log"
    awk -v cpu="$(awk '{ print $1 + $2 }' "$t")" -v secs="$2" -v b="$(busy_secs)" -v b0="$b0" -v s="$(stub_secs)" -v s0="$s0" \
        '/^Requests\/sec/ { print secs, $2, cpu * 1000 / ($2 * secs), b - b0 - cpu - (s - s0) }' "$t.log"
}

for r in $(seq "$ROUNDS"); do
    for j in 64 8; do
        line=$(undisturbed run_tool "$j" "$r"); echo "$line" >>"$WORK/cc-j$j.$$"
        log "round $r -j $j: wall s, CPU s, CPU s of other processes: $line"
    done
    for c in 64 8; do
        line=$(undisturbed run_wrk "$c" $((c == 64 ? 10 : 5))); echo "$line" >>"$WORK/cc-wrk$c.$$"
        log "round $r wrk -c$c: secs, req/s, wrk's CPU ms/req, CPU s of other processes: $line"
    done
done

# col FILE N — the medians of column N over the undisturbed lines (over all if none is).
col() {
    local clean; clean=$(awk '$NF != "disturbed"' "$1")
    if [[ -n $clean ]]; then awk -v n="$2" '{ print $n }' <<<"$clean" | median; else awk -v n="$2" '{ print $n }' "$1" | median; fi
}
echo "# client_cost: $ROWS rows, 100 rooms, nginx stub (1 worker); medians of $ROUNDS rounds (of the undisturbed ones); $(machine_info)"
echo "| run | wall s | rows/s | CPU s (user+sys) | CPU ms/row | wrk req/s, same conns | rows/s ÷ wrk | wrk's own CPU ms/req |"
echo "|---|---|---|---|---|---|---|---|"
for j in 64 8; do
    awk -v j="$j" -v w="$(col "$WORK/cc-j$j.$$" 1)" -v c="$(col "$WORK/cc-j$j.$$" 2)" -v n="$ROWS" \
        -v k="$(col "$WORK/cc-wrk$j.$$" 2)" -v kc="$(col "$WORK/cc-wrk$j.$$" 3)" 'BEGIN {
        printf "| synbatch -j %d | %.2f | %.0f | %.2f | %.4f | %.0f | %.0f%% | %.4f |\n", j, w, n / w, c, c * 1000 / n, k, 100 * n / w / k, kc }'
done
echo "every run kept (wall s, CPU s, CPU s of other processes meanwhile; wrk: secs, req/s, CPU ms/req, other):"
for f in j64 j8 wrk64 wrk8; do echo "  $f: $(paste -sd'|' "$WORK/cc-$f.$$" | sed 's/|/ | /g')"; done
rm -f "$WORK"/cc-*."$$"
