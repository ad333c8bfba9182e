#!/usr/bin/env bash
# rooms_and_limits.sh — issue 12's two workloads on a real Synapse, synbatch beside the asyncio
# script an admin would write instead (bench/async_tool.py: 16 workers, each on a keep-alive
# connection, 429s waited out as the server says).
#
# 1. JOINS (profile relaxed): 600 fresh users into 3 fresh public rooms, the file sorted by room
#    (200 rows of room A, then B, then C):
#      synbatch          `synbatch join sorted.csv` (default -j 8; spreads over rooms itself)
#      async-interleave  async_tool.py join -j 16 --order interleave (takes the rooms in turn)
#      async-file        async_tool.py join -j 16 --order file (the file's order)
#    Every join must answer 200 and each room must end with 201 members.
# 2. INVITES (profile default: Synapse's own limits, 0.3 invites/s per room and per inviter
#    after a burst of 10): N fresh users into one fresh private room of the admin, for N in
#    INVITES (default "30 300"):
#      synbatch / synbatch --lift-ratelimit / async / async --lift
#    (INVITE_METHODS chooses among these and synbatch-lift-j16). Every invite must end 200. The runs without a lift of N >= 100 take minutes each: they get
#    ROUNDS_SLOW rounds (default 1), the others ROUNDS.
# Methods rotate each round (rounds interleaved); figures are medians over the rounds, with
# Synapse's CPU and what other processes took meanwhile (a disturbance: see lib.sh).
#
# Run:    bash bench/rooms_and_limits.sh    (PARTS="joins invites" ROUNDS=3 ROUNDS_SLOW=1
#                                            INVITES="30 300" QUIET_WAIT=300 TRIES=2 to choose)
# Needs:  cargo, python3; the harness runs Synapse from target/bench/synapse (servers of the
#         bench's own, stopped at the end unless KEEP_SYNAPSE=1). Traffic only to 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
ROUNDS_SLOW=${ROUNDS_SLOW:-1}
PARTS=${PARTS:-joins invites}
INVITES=${INVITES:-30 300}
JOINS=${JOINS:-600}
HARNESS="python3 $REPO/tests/synapse/harness.py"
export SYNBATCH_TEST_DIR=$WORK/synapse
TOOL="python3 $REPO/bench/synapse_tool.py"
ASYNC="python3 $REPO/bench/async_tool.py"
need /usr/bin/time:time
build
D=$WORK/rooms-limits.$$
mkdir -p "$D/state"
# --lift-ratelimit's state file goes here, not into the user's own state directory.
export XDG_STATE_HOME=$D/state
stop_all() { rm -rf "$D"; [[ -n ${KEEP_SYNAPSE:-} ]] || $HARNESS stop --all >/dev/null || true; }
trap stop_all EXIT

server() {
    local state; state=$($HARNESS ensure --profile "$1")
    URL=$(json url <<<"$state"); TOKEN=$(json admin_token <<<"$state"); SYNAPSE_PID=$(json pid <<<"$state")
    export URL TOKEN
    printf '%s' "$TOKEN" >"$D/token"
}

# timed OUT CMD... — runs CMD; prints "wall-s client-cpu-s synapse-cpu-s other-cpu-s".
timed() {
    local out=$1 b0 p0 b1 p1; shift
    wait_quiet
    b0=$(busy_secs); p0=$(pid_secs "$SYNAPSE_PID")
    /usr/bin/time -o "$D/time" -f '%e %U %S' "$@" >"$out" 2>"$out.err" || true
    b1=$(busy_secs); p1=$(pid_secs "$SYNAPSE_PID")
    awk -v b="$b1" -v b0="$b0" -v p="$p1" -v p0="$p0" '{ c = $2 + $3; printf "%.3f %.2f %.2f %.2f\n", $1, c, p - p0, b - b0 - c - (p - p0) }' "$D/time"
}

# ok_count METHOD OUT RESULTS — rows that ended 200.
ok_count() {
    case $1 in
    synbatch*) grep -c ',ok,200,' "$3" || true ;;
    *) read -r ok _ <"$2"; echo "$ok" ;;
    esac
}

join_one() {
    local method=$1 tag=rl$(date +%s%N | cut -c8-16)$2 rooms=() r m
    for r in a b c; do rooms+=("$($HARNESS create-room --alias "$tag$r" --profile relaxed | json room_id)"); done
    $TOOL users "${tag}u" "$JOINS" >"$D/users"
    { echo user,room; for r in 0 1 2; do sed -n "$((r * JOINS / 3 + 1)),$(((r + 1) * JOINS / 3))p" "$D/users" | sed "s/\$/,${rooms[$r]}/"; done; } >"$D/sorted.csv"
    rm -f "$D/res.csv"
    case $method in
    synbatch) set -- "$SYNBATCH" join "$D/sorted.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" ;;
    async-interleave) set -- $ASYNC join "$D/sorted.csv" -j 16 --order interleave ;;
    async-file) set -- $ASYNC join "$D/sorted.csv" -j 16 --order file ;;
    esac
    local line; line=$(timed "$D/out" "$@")
    local ok; ok=$(ok_count "$method" "$D/out" "$D/res.csv")
    for r in 0 1 2; do
        m=$($TOOL members "${rooms[$r]}")
        [[ $m == $((JOINS / 3 + 1)) ]] || { log "join $method: room $r has $m members"; cat "$D/out.err" >&2; exit 1; }
    done
    [[ $ok == "$JOINS" ]] || { log "join $method: $ok of $JOINS ok"; cat "$D/out.err" >&2; exit 1; }
    echo "$line"
}

invite_one() {
    local method=$1 n=$2 tag=ri$(date +%s%N | cut -c8-16)$3 room
    room=$($HARNESS create-room --alias "$tag" --private --profile default | json room_id)
    $TOOL users "${tag}u" "$n" | sed "s/\$/,$room/" | { echo user,room; cat; } >"$D/invite.csv"
    rm -f "$D/res.csv"
    case $method in
    synbatch) set -- "$SYNBATCH" invite "$D/invite.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" ;;
    synbatch-lift) set -- "$SYNBATCH" invite "$D/invite.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" --lift-ratelimit ;;
    synbatch-lift-j16) set -- "$SYNBATCH" invite "$D/invite.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" --lift-ratelimit -j 16 ;;
    async) set -- $ASYNC invite "$D/invite.csv" -j 16 ;;
    async-lift) set -- $ASYNC invite "$D/invite.csv" -j 16 --lift ;;
    esac
    local line; line=$(timed "$D/out" "$@")
    local ok; ok=$(ok_count "$method" "$D/out" "$D/res.csv")
    [[ $ok == "$n" ]] || { log "invite $method: $ok of $n ok"; cat "$D/out.err" >&2; exit 1; }
    echo "$line"
}

# report NAME UNIT N METHODS... — a table row per method from $D/NAME.METHOD.* files.
report() {
    local name=$1 n=$2 m; shift 2
    for m in "$@"; do
        [[ -s $D/$name.$m ]] || continue
        local w; w=$(median <"$D/$name.$m")
        printf '| %s | %s | %.1f | %.2f | %s | %s | %s | %s |\n' "$name" "$m" "$(awk -v n="$n" -v w="$w" 'BEGIN { print n / w }')" "$w" \
            "$(median <"$D/$name.$m.syn")" "$(median <"$D/$name.$m.cli")" "$(wc -l <"$D/$name.$m")" "$(paste -sd' ' "$D/$name.$m")"
    done
}

record() { # NAME METHOD LINE
    local w cc sc oc; read -r w cc sc oc _ <<<"$3"
    echo "$w" >>"$D/$1.$2"; echo "$sc" >>"$D/$1.$2.syn"; echo "$cc" >>"$D/$1.$2.cli"; echo "$oc" >>"$D/other"
    log "$1 $2: ${w}s; CPU s: client $cc, Synapse $sc, other processes $oc"
}

echo "# rooms_and_limits: $(machine_info)"
echo "| workload | method | rows/s (median) | seconds (median) | Synapse CPU s | client CPU s | rounds | every round, s |"
echo "|---|---|---|---|---|---|---|---|"
if [[ " $PARTS " == *" joins "* ]]; then
    server relaxed
    methods=(synbatch async-interleave async-file)
    for r in $(seq "$ROUNDS"); do
        for i in 0 1 2; do
            m=${methods[$(((i + r - 1) % 3))]}
            record "joins${JOINS}x3" "$m" "$(TRIES=${TRIES:-2} undisturbed join_one "$m" "$r")"
        done
    done
    report "joins${JOINS}x3" "$JOINS" "${methods[@]}"
fi
if [[ " $PARTS " == *" invites "* ]]; then
    server default
    read -r -a methods <<<"${INVITE_METHODS:-synbatch-lift async-lift synbatch async}"
    k=${#methods[@]}
    for n in $INVITES; do
        for r in $(seq "$ROUNDS"); do
            for i in $(seq 0 $((k - 1))); do
                m=${methods[$(((i + r - 1) % k))]}
                # Unlifted runs of many rows take minutes: fewer rounds of those.
                if [[ $m != *lift* && $n -ge 100 && $r -gt $ROUNDS_SLOW ]]; then continue; fi
                record "invites$n" "$m" "$(TRIES=1 undisturbed invite_one "$m" "$n" "$r")"
            done
        done
        report "invites$n" "$n" "${methods[@]}"
    done
fi
echo "CPU taken by other processes during each run (s; ~0 = undisturbed): $(paste -sd' ' "$D/other")"
