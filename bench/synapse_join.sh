#!/usr/bin/env bash
# synapse_join.sh — joining 600 fresh users into one fresh public room of a real Synapse, 3 ways.
#
# For each Synapse profile of tests/synapse/harness.py (PROFILES, default "relaxed default":
# relaxed has every rate limit raised, default is Synapse's own settings; postgres and
# postgres-default the same on PostgreSQL) and each of ROUNDS
# rounds (default 3; the order of the methods rotates each round), with fresh users and a fresh
# room for each method (users are created before the clock starts, by concurrent admin PUTs):
#   a. seq       one request at a time (python3 http.client, one keep-alive connection)
#   b. parallel  GNU parallel -j16, one curl per user (a new connection each)
#   c. synbatch  `synbatch join users.csv` with default settings (-j 8), end to end (its whoami,
#                admin check and member listing are inside the time)
# and reports users/s (median over the undisturbed rounds, or all if none), synbatch's ratio to the best of a and b, and the CPU
# that Synapse, the client and every other process (a disturbance: rerun) used meanwhile.
# Every join must answer 200 and the room must end with 601 members (600 + the admin).
# Target: synbatch >= 95% of the best.
#
# Run:    bash bench/synapse_join.sh        (PROFILES=relaxed ROUNDS=3 KEEP_SYNAPSE=1 ... to choose)
# Needs:  cargo, python3; the harness installs Synapse (~1 min, once) and runs it from
#         target/bench/synapse (servers of the bench's own, stopped at the end unless
#         KEEP_SYNAPSE=1); installs parallel, curl, time (apt) if missing. Traffic only to the
#         harness's 127.0.0.1 Synapse. A run disturbed by other processes is redone (TRIES=2).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=600
ROUNDS=${ROUNDS:-3}
PROFILES=${PROFILES:-relaxed default}
PARALLEL_J=${PARALLEL_J:-16}        # for investigating: parallel's -j
SYNBATCH_ARGS=${SYNBATCH_ARGS:-}    # for investigating: e.g. "-j 16" (the figures use none)
HARNESS="python3 $REPO/tests/synapse/harness.py"
# Servers of our own (not the tests' ones, which another engineer's test run may be loading).
export SYNBATCH_TEST_DIR=$WORK/synapse
TOOL="python3 $REPO/bench/synapse_tool.py"
need parallel:parallel curl:curl /usr/bin/time:time
build
D=$WORK/synapse-join.$$
mkdir -p "$D"
stop_all() { rm -rf "$D"; [[ -n ${KEEP_SYNAPSE:-} ]] || $HARNESS stop --all >/dev/null || true; }
trap stop_all EXIT

# one PROFILE METHOD ROUND — fresh room and users, runs METHOD; prints
# "wall-s client-cpu-s synapse-cpu-s other-cpu-s" (other: every other process meanwhile).
one() {
    local profile=$1 method=$2 tag=bj$(date +%s%N | cut -c8-16)r$3$2 ok room b0 p0 b1 p1
    room=$($HARNESS create-room --alias "$tag" --profile "$profile" | json room_id)
    $TOOL users "${tag}u" "$N" >"$D/users"
    case $method in
    seq)
        set -- $TOOL seq "$room" "$D/users" ;;
    parallel)
        local path=/_synapse/admin/v1/join/$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$room")
        set -- parallel --will-cite -j"$PARALLEL_J" -a "$D/users" curl -s -o /dev/null -w '%{http_code}\\n' -X POST \
            -H @"$D/auth" -H "'Content-Type: application/json'" -d "'{\"user_id\":\"{}\"}'" "$URL$path" ;;
    synbatch)
        { echo user,room; sed "s/\$/,$room/" "$D/users"; } >"$D/in.csv"
        rm -f "$D/res.csv"
        # shellcheck disable=SC2086
        set -- "$SYNBATCH" join "$D/in.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" $SYNBATCH_ARGS ;;
    esac
    wait_quiet
    b0=$(busy_secs); p0=$(pid_secs "$SYNAPSE_PID")
    /usr/bin/time -o "$D/time" -f '%e %U %S' "$@" >"$D/out" 2>"$D/err" || true
    b1=$(busy_secs); p1=$(pid_secs "$SYNAPSE_PID")
    case $method in
    seq) read -r ok _ <"$D/out" ;;
    parallel) ok=$(grep -c '^200$' "$D/out" || true) ;;
    synbatch) ok=$(grep -c ',ok,200,' "$D/res.csv" || true)
        log "synbatch: $(head -n1 "$D/err"); attempts $(awk -F, 'NR > 1 { a += $7 } END { print a }' "$D/res.csv")" ;;
    esac
    local members; members=$($TOOL members "$room")
    [[ $ok == "$N" && $members == $((N + 1)) ]] || { log "$profile $method: $ok of $N joins ok, $members members"; cat "$D/err" >&2; exit 1; }
    awk -v b="$b1" -v b0="$b0" -v p="$p1" -v p0="$p0" '{ c = $2 + $3; printf "%.3f %.2f %.2f %.2f\n", $1, c, p - p0, b - b0 - c - (p - p0) }' "$D/time"
}

echo "# synapse_join: $N fresh users into one fresh public room; median of $ROUNDS; $(machine_info)"
echo "| Synapse profile | seq users/s | parallel -j$PARALLEL_J curl users/s | synbatch ${SYNBATCH_ARGS:-(default -j 8)} users/s | synbatch ÷ best | Synapse CPU s per run (seq / parallel / synbatch) | client CPU s per run (seq / parallel / synbatch) |"
echo "|---|---|---|---|---|---|---|"
for profile in $PROFILES; do
    state=$($HARNESS ensure --profile "$profile")
    URL=$(json url <<<"$state"); TOKEN=$(json admin_token <<<"$state"); SYNAPSE_PID=$(json pid <<<"$state")
    export URL TOKEN
    printf '%s' "$TOKEN" >"$D/token"; printf 'Authorization: Bearer %s\n' "$TOKEN" >"$D/auth"
    for r in $(seq "$ROUNDS"); do
        methods=(seq parallel synbatch)   # rotated each round, so that no method is always first
        for i in 0 1 2; do
            m=${methods[$(((i + r - 1) % 3))]}
            line=$(TRIES=${TRIES:-2} undisturbed one "$profile" "$m" "$r"); read -r w cc sc oc <<<"$line"
            log "$profile round $r $m: ${w}s = $(awk -v w="$w" -v n="$N" 'BEGIN { printf "%.1f", n / w }') users/s; CPU s: client $cc, Synapse $sc, other processes $oc"
            echo "$w" >>"$D/$profile.$m"; echo "$sc" >>"$D/$profile.$m.syn"; echo "$cc" >>"$D/$profile.$m.cli"
            echo "${oc}" >>"$D/other"; [[ $oc == *disturbed ]] && echo no >>"$D/$profile.$m.ok" || echo ok >>"$D/$profile.$m.ok"
        done
    done
    # medians over the undisturbed runs of each method (over all of them if none is)
    med() { local f=$D/$profile.$1 ok; ok=$(paste -d' ' "$f" "$D/$profile.$1.ok" | awk '$2 == "ok" { print $1 }')
        if [[ -n $ok ]]; then median <<<"$ok"; else median <"$f"; fi; }
    awk -v p="$profile" -v n="$N" -v a="$(med seq)" -v b="$(med parallel)" -v c="$(med synbatch)" 'BEGIN {
        best = (n / a > n / b) ? n / a : n / b
        printf "| %s | %.1f | %.1f | %.1f | %.0f%% | ", p, n / a, n / b, n / c, 100 * (n / c) / best }'
    for k in syn cli; do
        printf '%s / %s / %s | ' "$(median <"$D/$profile.seq.$k")" "$(median <"$D/$profile.parallel.$k")" "$(median <"$D/$profile.synbatch.$k")"
    done
    echo
done
echo "all runs, seconds (seq / parallel / synbatch):"
for profile in $PROFILES; do
    echo "  $profile: $(paste -sd' ' "$D/$profile.seq") / $(paste -sd' ' "$D/$profile.parallel") / $(paste -sd' ' "$D/$profile.synbatch")"
done
echo "CPU taken by other processes during each run (s; ~0 = undisturbed): $(paste -sd' ' "$D/other")"
