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

run_tool() { # J ROUND -> "wall cpu" ; checks every row came back ok
    local j=$1 r=$2 res=$WORK/cc-j$1.results.csv
    rm -f "$res"
    read -r wall user sys rss code < <(measure "$WORK/cc-j$j-$r.time" \
        "$SYNBATCH" join "$INPUT" --homeserver "$STUB_URL" -j "$j" -q -o "$res")
    local ok; ok=$(grep -c ',ok,200,' "$res" || true)
    [[ $code == 0 && $ok == "$ROWS" ]] || { log "j$j: exit $code, $ok ok rows"; cat "$WORK/cc-j$j-$r.time.log" >&2; exit 1; }
    awk -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN { print w, u + s }'
}
run_wrk() { # CONNS SECS -> requests/s
    wrk -t2 -c"$1" -d"$2"s -s "$(dirname "$0")/join.lua" "$STUB_URL" | awk '/^Requests\/sec/ { print $2 }'
}

for r in $(seq "$ROUNDS"); do
    for j in 64 8; do
        read -r wall cpu < <(run_tool "$j" "$r")
        echo "$wall" >>"$WORK/cc-j$j.wall.$$"; echo "$cpu" >>"$WORK/cc-j$j.cpu.$$"
        log "round $r -j $j: ${wall}s wall, ${cpu}s cpu"
    done
    run_wrk 64 10 >>"$WORK/cc-wrk64.$$"; log "round $r wrk -c64: $(tail -n1 "$WORK/cc-wrk64.$$") req/s"
    run_wrk 8 5 >>"$WORK/cc-wrk8.$$";   log "round $r wrk -c8: $(tail -n1 "$WORK/cc-wrk8.$$") req/s"
done

echo "# client_cost: $ROWS rows, 100 rooms, nginx stub (1 worker), median of $ROUNDS; $(machine_info)"
echo "| run | wall s | rows/s | CPU s (user+sys) | CPU ms/row | wrk req/s, same conns | rows/s ÷ wrk |"
echo "|---|---|---|---|---|---|---|"
for j in 64 8; do
    wall=$(median <"$WORK/cc-j$j.wall.$$"); cpu=$(median <"$WORK/cc-j$j.cpu.$$"); w=$(median <"$WORK/cc-wrk$j.$$")
    awk -v j="$j" -v w="$wall" -v c="$cpu" -v n="$ROWS" -v k="$w" 'BEGIN {
        printf "| synbatch -j %d | %.2f | %.0f | %.2f | %.4f | %.0f | %.0f%% |\n", j, w, n / w, c, c * 1000 / n, k, 100 * n / w / k }'
done
echo "all runs (wall s / cpu s / wrk req/s):"
for j in 64 8; do echo "  -j $j: $(paste -sd' ' "$WORK/cc-j$j.wall.$$") / $(paste -sd' ' "$WORK/cc-j$j.cpu.$$") / wrk -c$j $(paste -sd' ' "$WORK/cc-wrk$j.$$")"; done
rm -f "$WORK"/cc-*."$$"
