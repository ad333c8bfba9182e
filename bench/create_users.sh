#!/usr/bin/env bash
# create_users.sh — creating N (default 2,000) accounts with a display name and a password on a
# real Synapse, three ways, side by side in one run, fresh localparts each time:
#   a. seq       one PUT /_synapse/admin/v2/users/<id> at a time (python3, one keep-alive connection)
#   b. asyncio   the same PUTs from 16 asyncio tasks (python3, a keep-alive connection each)
#   c. synbatch  `synbatch create-users users.csv` with default settings (-j 16; the account list
#                once, then a PUT per account)
# Each measurement gets a new Synapse with an empty database. Reports accounts/s (median over
# ROUNDS, default 3; the order rotates each round), synbatch's ratio to the asyncio script, and
# the CPU Synapse spent per account. Every account must answer 201 (synbatch: `ok`). The issue's
# target: synbatch at least as fast as the asyncio script.
#
# Run:    bash bench/create_users.sh         (N=600 ROUNDS=1 ... to choose; PROFILE=postgres for
#         a Synapse on PostgreSQL, which the harness installs and starts)
# Needs:  cargo, python3; runs its own Synapse (PROFILE, default relaxed) under target/bench/synapse, as
#         bench/synapse_join.sh does, stopped at the end unless KEEP_SYNAPSE=1. Only 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=${N:-2000}
ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-relaxed}
HARNESS="python3 $REPO/tests/synapse/harness.py"
export SYNBATCH_TEST_DIR=$WORK/synapse
TOOL="python3 $REPO/bench/create_users_tool.py"
SYNBATCH_ARGS=${SYNBATCH_ARGS:-}    # for investigating: e.g. "-j 16" (the figures use none)
need /usr/bin/time:time
build
D=$WORK/create-users.$$
mkdir -p "$D"
stop_all() { rm -rf "$D"; [[ -n ${KEEP_SYNAPSE:-} ]] || $HARNESS stop --all >/dev/null || true; }
trap stop_all EXIT

# fresh — a new Synapse with an empty database for each measurement: on SQLite, registering an
# account scans the users table (lower(name) has no index there), so a server that keeps the
# accounts of earlier measurements would slow down whichever method comes later.
fresh() {
    $HARNESS stop --profile "$PROFILE" >/dev/null 2>&1 || true
    local state; state=$($HARNESS ensure --profile "$PROFILE" 2>"$D/harness.log") || { cat "$D/harness.log" >&2; return 1; }
    URL=$(json url <<<"$state"); TOKEN=$(json admin_token <<<"$state"); SYNAPSE_PID=$(json pid <<<"$state")
    export URL TOKEN
    printf '%s' "$TOKEN" >"$D/token"
}

# one METHOD ROUND — prints "wall-s synapse-cpu-s other-cpu-s"; checks every account was created.
one() {
    local method=$1 prefix=cu$$r$2$1 created b0 p0 b1 p1
    fresh
    case $method in
    seq) set -- $TOOL seq "$prefix" "$N" ;;
    asyncio) set -- $TOOL asyncio "$prefix" "$N" 16 ;;
    synbatch)
        awk -v p="$prefix" -v n="$N" 'BEGIN { print "user,displayname,password"; for (i = 0; i < n; i++) printf "%s%d,Bench @%s%d:localhost,Bench-pw-1234\n", p, i, p, i }' >"$D/in.csv"
        rm -f "$D/res.csv"
        # shellcheck disable=SC2086
        set -- "$SYNBATCH" create-users "$D/in.csv" --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" -q $SYNBATCH_ARGS ;;
    esac
    wait_quiet
    b0=$(busy_secs); p0=$(pid_secs "$SYNAPSE_PID")
    /usr/bin/time -o "$D/time" -f '%e %U %S' "$@" >"$D/out" 2>"$D/err" || true
    b1=$(busy_secs); p1=$(pid_secs "$SYNAPSE_PID")
    case $method in
    synbatch) created=$(grep -c ',ok,201,' "$D/res.csv" || true) ;;
    *) read -r created _ <"$D/out" ;;
    esac
    [[ $created == "$N" ]] || { log "$method: $created of $N created"; cat "$D/err" >&2; exit 1; }
    awk -v b="$b1" -v b0="$b0" -v p="$p1" -v p0="$p0" '{ c = $2 + $3; printf "%.3f %.2f %.2f\n", $1, p - p0, b - b0 - c - (p - p0) }' "$D/time"
}

echo "# create_users: $N accounts (display name + password), $PROFILE profile; median of $ROUNDS; $(machine_info)"
for r in $(seq "$ROUNDS"); do
    methods=(seq asyncio synbatch)
    for i in 0 1 2; do
        m=${methods[$(((i + r - 1) % 3))]}
        line=$(one "$m" "$r"); read -r w sc oc <<<"$line"
        log "round $r $m: ${w}s = $(awk -v w="$w" -v n="$N" 'BEGIN { printf "%.1f", n / w }') accounts/s; Synapse CPU ${sc}s; other processes ${oc}s"
        echo "$w" >>"$D/$m"; echo "$sc" >>"$D/$m.syn"
    done
done
awk -v n="$N" -v args="${SYNBATCH_ARGS:-(default settings, -j 16)}" -v a="$(median <"$D/seq")" -v b="$(median <"$D/asyncio")" -v c="$(median <"$D/synbatch")" \
    -v sa="$(median <"$D/seq.syn")" -v sb="$(median <"$D/asyncio.syn")" -v sc="$(median <"$D/synbatch.syn")" 'BEGIN {
    print "| seq accounts/s | asyncio -c16 accounts/s | synbatch " args " accounts/s | synbatch ÷ asyncio | Synapse CPU ms per account (seq / asyncio / synbatch) |"
    print "|---|---|---|---|---|"
    printf "| %.1f | %.1f | %.1f | %.0f%% | %.1f / %.1f / %.1f |\n", n / a, n / b, n / c, 100 * b / c, 1000 * sa / n, 1000 * sb / n, 1000 * sc / n }'
echo "all runs, seconds: seq $(paste -sd' ' "$D/seq"); asyncio $(paste -sd' ' "$D/asyncio"); synbatch $(paste -sd' ' "$D/synbatch")"
echo "synbatch ÷ asyncio per round: $(paste -d' ' "$D/asyncio" "$D/synbatch" | awk '{ printf "%s%.0f%%", (NR > 1 ? " " : ""), 100 * $1 / $2 }')"
