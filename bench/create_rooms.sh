#!/usr/bin/env bash
# create_rooms.sh — creating N (default 50) rooms with an alias, a name and a topic, every other
# one listed in the room directory, on a real Synapse, two ways, side by side in one run, fresh
# aliases each time:
#   a. asyncio   createRoom (+ the directory PUT) from 8 asyncio tasks (python3, a keep-alive
#                connection each), 429s waited out
#   b. synbatch  `synbatch create-rooms rooms.csv` with default settings (-j 8; per row: the
#                alias looked up, createRoom, the directory PUT and its read-back)
# Reports rooms/s (median over ROUNDS, default 3; the order alternates each round) and
# synbatch's ratio to the asyncio script. Every room must be created (synbatch: `ok`).
#
# PROFILE=relaxed (default) raises Synapse's rate limits out of the way: what is measured is
# the client and Synapse's own work. PROFILE=default keeps Synapse's limits: createRoom is
# limited per user to a burst of 10 and then one room per 62.5 s (rc_room_creation), so 50 rooms
# take some 42 minutes whatever the client; the lifted rate limit (--lift-ratelimit) is what
# changes that.
#
# Run:    bash bench/create_rooms.sh         (N=20 ROUNDS=1 ... to choose)
# Needs:  cargo, python3; runs its own Synapse under target/bench/synapse, as
#         bench/synapse_join.sh does, stopped at the end unless KEEP_SYNAPSE=1. Only 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${N:-50}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-relaxed}
HARNESS="python3 $REPO/tests/synapse/harness.py"
export SYNBATCH_TEST_DIR=$WORK/synapse
TOOL="python3 $REPO/bench/create_rooms_tool.py"
need /usr/bin/time:time
build
D=$WORK/create-rooms.$$
mkdir -p "$D"
stop_all() { rm -rf "$D"; [[ -n ${KEEP_SYNAPSE:-} ]] || $HARNESS stop --all >/dev/null || true; }
trap stop_all EXIT

state=$($HARNESS ensure --profile "$PROFILE" 2>"$D/harness.log") || { cat "$D/harness.log" >&2; exit 1; }
URL=$(json url <<<"$state"); TOKEN=$(json admin_token <<<"$state"); SYNAPSE_PID=$(json pid <<<"$state")
export URL TOKEN
printf '%s' "$TOKEN" >"$D/token"

# one METHOD ROUND — prints "wall-s synapse-cpu-s"; checks every room was created.
one() {
    local method=$1 prefix=cr$$r$2$1 created p0 p1
    case $method in
    asyncio) set -- $TOOL asyncio "$prefix" "$N" 8 ;;
    synbatch)
        awk -v p="$prefix" -v n="$N" 'BEGIN { print "alias,name,topic,directory"; for (i = 0; i < n; i++) printf "%s%d,Room %d,Topic %d,%s\n", p, i, i, i, (i % 2 ? "" : "yes") }' >"$D/in.csv"
        rm -f "$D/res.csv"
        set -- "$SYNBATCH" create-rooms "$D/in.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" -q ;;
    esac
    wait_quiet
    p0=$(pid_secs "$SYNAPSE_PID")
    /usr/bin/time -o "$D/time" -f '%e' "$@" >"$D/out" 2>"$D/err" || true
    p1=$(pid_secs "$SYNAPSE_PID")
    case $method in
    synbatch) created=$(grep -c ',ok,200,' "$D/res.csv" || true) ;;
    *) read -r created _ <"$D/out" ;;
    esac
    [[ $created == "$N" ]] || { log "$method: $created of $N created"; cat "$D/err" >&2; exit 1; }
    awk -v p="$p1" -v p0="$p0" '{ printf "%.3f %.2f\n", $1, p - p0 }' "$D/time"
}

echo "# create_rooms: $N rooms (alias, name, topic; every other listed), profile $PROFILE; median of $ROUNDS; $(machine_info)"
for r in $(seq "$ROUNDS"); do
    methods=(asyncio synbatch)
    for i in 0 1; do
        m=${methods[$(((i + r - 1) % 2))]}
        line=$(one "$m" "$r"); read -r w sc <<<"$line"
        log "round $r $m: ${w}s = $(awk -v w="$w" -v n="$N" 'BEGIN { printf "%.1f", n / w }') rooms/s; Synapse CPU ${sc}s"
        echo "$w" >>"$D/$m"; echo "$sc" >>"$D/$m.syn"
    done
done
awk -v n="$N" -v a="$(median <"$D/asyncio")" -v b="$(median <"$D/synbatch")" \
    -v sa="$(median <"$D/asyncio.syn")" -v sb="$(median <"$D/synbatch.syn")" 'BEGIN {
    print "| asyncio -c8 rooms/s | synbatch (default -j 8) rooms/s | synbatch ÷ asyncio | Synapse CPU ms per room (asyncio / synbatch) |"
    print "|---|---|---|---|"
    printf "| %.1f | %.1f | %.0f%% | %.0f / %.0f |\n", n / a, n / b, 100 * a / b, 1000 * sa / n, 1000 * sb / n }'
echo "all runs, seconds: asyncio $(paste -sd' ' "$D/asyncio"); synbatch $(paste -sd' ' "$D/synbatch")"
