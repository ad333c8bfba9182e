#!/usr/bin/env bash
# sync_members.sh — making 10 private rooms match a sheet of 200 users each, on a real Synapse:
# `synbatch sync-members` against the hand-written sequence an admin runs without it.
#
# Each of ROUNDS rounds (default 3; the order of the two methods alternates) gives each method
# fresh rooms and users (made before the clock starts): every room has STAY (150) of the sheet's
# WANTED (200) users and EXTRA (20) users the sheet does not name, so the sync is 50 joins and 20
# kicks per room, 700 changes in all.
#   a. by hand   export each room's members (admin API), diff them with the sheet (python3),
#                then `synbatch join join.csv` and `synbatch kick kick.csv` (default settings)
#   b. sync      `synbatch sync-members sheet.csv --yes --max-removals 20` (default settings):
#                its reads, plan, plan file and the apply, end to end
# Both are checked afterwards: every room has exactly the sheet's users and the admin. Reports
# the wall time of each (median), their ratio, and the CPU of Synapse and of other processes.
# Relaxed profile only (kicks are Client-Server requests, rate limited by Synapse's defaults).
#
# Run:    bash bench/sync_members.sh        (ROUNDS=3 KEEP_SYNAPSE=1 ... to choose)
# Needs:  cargo, python3; the harness installs Synapse (~1 min, once) and runs it from
#         target/bench/synapse; installs time (apt) if missing. Traffic only to 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ROUNDS=${ROUNDS:-3}
ROOMS=10 WANTED=200 STAY=150 EXTRA=20
HARNESS="python3 $REPO/tests/synapse/harness.py"
export SYNBATCH_TEST_DIR=$WORK/synapse
TOOL="python3 $REPO/bench/sync_tool.py"
need /usr/bin/time:time
build
D=$WORK/sync-members.$$
mkdir -p "$D"
stop_all() { rm -rf "$D"; [[ -n ${KEEP_SYNAPSE:-} ]] || $HARNESS stop --all >/dev/null || true; }
trap stop_all EXIT

# one METHOD ROUND — fresh rooms and users, runs METHOD; prints "wall-s synapse-cpu-s other-cpu-s".
one() {
    local method=$1 tag=bs$(date +%s%N | cut -c8-16)r$2${1:0:1} dir b0 p0 b1 p1 t0 t1
    dir=$D/$tag; mkdir -p "$dir"
    $TOOL setup "$tag" $ROOMS $WANTED $STAY $EXTRA "$dir"
    wait_quiet
    b0=$(busy_secs); p0=$(pid_secs "$SYNAPSE_PID"); t0=$(date +%s.%N)
    case $method in
    hand)
        $TOOL export-diff "$dir" >"$dir/diff"
        "$SYNBATCH" join "$dir/join.csv" --homeserver "$URL" --token-file "$D/token" -q 2>"$dir/err"
        "$SYNBATCH" kick "$dir/kick.csv" --homeserver "$URL" --token-file "$D/token" -q 2>>"$dir/err" ;;
    sync)
        "$SYNBATCH" sync-members "$dir/sheet.csv" --homeserver "$URL" --token-file "$D/token" \
            --yes --max-removals $EXTRA -q 2>"$dir/err" ;;
    esac
    t1=$(date +%s.%N); b1=$(busy_secs); p1=$(pid_secs "$SYNAPSE_PID")
    $TOOL check "$dir" >/dev/null || { cat "$dir/err" >&2; exit 1; }
    awk -v t0="$t0" -v t1="$t1" -v b="$b1" -v b0="$b0" -v p="$p1" -v p0="$p0" \
        'BEGIN { printf "%.3f %.2f %.2f\n", t1 - t0, p - p0, b - b0 - (p - p0) }'
}

echo "# sync_members: $ROOMS private rooms x $WANTED users ($((ROOMS * (WANTED - STAY))) joins, $((ROOMS * EXTRA)) kicks); median of $ROUNDS; $(machine_info)"
state=$($HARNESS ensure --profile relaxed)
URL=$(json url <<<"$state"); TOKEN=$(json admin_token <<<"$state"); SYNAPSE_PID=$(json pid <<<"$state")
export URL TOKEN
printf '%s' "$TOKEN" >"$D/token"
for r in $(seq "$ROUNDS"); do
    methods=(hand sync); ((r % 2)) || methods=(sync hand)
    for m in "${methods[@]}"; do
        read -r w sc oc <<<"$(one "$m" "$r")"
        log "round $r $m: ${w}s; CPU s: Synapse $sc, other processes $oc"
        echo "$w" >>"$D/$m"; echo "$sc" >>"$D/$m.syn"; echo "$oc" >>"$D/other"
    done
done
awk -v a="$(median <"$D/hand")" -v b="$(median <"$D/sync")" -v sa="$(median <"$D/hand.syn")" -v sb="$(median <"$D/sync.syn")" 'BEGIN {
    print "| method | wall s (median) | Synapse CPU s |"
    print "|---|---|---|"
    printf "| export + diff + join + kick | %.2f | %.2f |\n", a, sa
    printf "| sync-members | %.2f | %.2f |\n", b, sb
    printf "sync-members takes %.0f%% of the hand-written sequence'"'"'s time\n", 100 * b / a }'
echo "all runs, seconds (hand / sync): $(paste -sd' ' "$D/hand") / $(paste -sd' ' "$D/sync")"
echo "CPU taken by other processes during each run (s): $(paste -sd' ' "$D/other")"
