#!/usr/bin/env bash
# sso_sweep.sh — the guide's whole-server SSO sweep (remove one provider from every account),
# three ways side by side, then export-users of 10,000 accounts.
#
# On a Synapse of its own (tests/synapse/harness.py, relaxed profile, under
# target/bench/synapse-sso so that the tests' server and its accounts are left alone), with 300
# accounts that each have two mappings (oidc-old, saml-keep). For each of
# ROUNDS rounds (default 1), the mappings are reset (not timed), then each method removes
# oidc-old from every account and is checked (every account left with exactly saml-keep):
#   a. seq       the guide's script: list pages, GET each user, PUT the rest; one request at a
#                time on one keep-alive connection (python3 http.client)
#   b. pool16    the same with a pool of 16 threads, one keep-alive connection each
#   c. synbatch  `synbatch remove-external-id --all-users --provider oidc-old --yes`, default
#                settings (-j 8), end to end (whoami, admin check, listing inside the time)
# Then accounts are added up to 10,000 (not timed) and `synbatch export-users` runs twice
# under /usr/bin/time: the list alone, and with --with-external-ids (a GET per account).
#
# Run:    bash bench/sso_sweep.sh           (ROUNDS=3 bash bench/sso_sweep.sh for medians;
#         PROFILE=postgres for a Synapse on PostgreSQL, which the harness installs and starts)
# Needs:  cargo, python3 (the harness installs Synapse); /usr/bin/time (apt, if missing).
#         Traffic only to 127.0.0.1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

N=300
EXPORT_N=10000
ROUNDS=${ROUNDS:-1}
PROFILE=${PROFILE:-relaxed}
ROOT=$WORK/synapse-sso
TOOL="python3 $REPO/bench/sso_tool.py"
need /usr/bin/time:time
build
# Its own server and venv (the first run installs Synapse there, ~1 min): the tests' server,
# with its thousands of test accounts, would make every sweep list and read them all.
state=$(SYNBATCH_TEST_DIR=$ROOT python3 "$REPO/tests/synapse/harness.py" ensure --profile "$PROFILE")
URL=$(json url <<<"$state"); TOKEN=$(json admin_token <<<"$state")
export URL TOKEN
D=$WORK/sso-sweep.$$
mkdir -p "$D"
trap 'rm -rf "$D"' EXIT
printf '%s' "$TOKEN" >"$D/token"
now() { date +%s.%N; }

accounts=$($TOOL total)
if ((accounts > N + 1)); then
    log "the bench server already has $accounts accounts (want $((N + 1))): stop it with"
    log "  SYNBATCH_TEST_DIR=$ROOT python3 tests/synapse/harness.py stop --all   and rerun"
    exit 1
fi

one() {  # one METHOD -> wall seconds
    local method=$1 t0 t1
    $TOOL setup "$N"
    case $method in
    seq) t0=$(now); $TOOL seq oidc-old >"$D/out"; t1=$(now) ;;
    pool16) t0=$(now); $TOOL pool oidc-old 16 >"$D/out"; t1=$(now) ;;
    synbatch)
        rm -f "$D/res.csv"
        t0=$(now)
        "$SYNBATCH" remove-external-id --all-users --provider oidc-old --yes -q \
            --homeserver "$URL" --token-file "$D/token" -o "$D/res.csv" 2>"$D/err" || { cat "$D/err" >&2; exit 1; }
        t1=$(now)
        log "synbatch: $(grep -c ',ok,' "$D/res.csv") ok, $(grep -c ',unchanged,' "$D/res.csv") unchanged" ;;
    esac
    $TOOL verify "$N"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

echo "# sso_sweep: $N accounts x 2 mappings, remove oidc-old from every account, $PROFILE profile; median of $ROUNDS; $(machine_info)"
echo "| method | users/s | seconds |"
echo "|---|---|---|"
for r in $(seq "$ROUNDS"); do
    for m in seq pool16 synbatch; do
        w=$(one "$m"); log "round $r $m: ${w}s"
        echo "$w" >>"$D/$m"
    done
done
for m in seq pool16 synbatch; do
    w=$(median <"$D/$m")
    awk -v m="$m" -v w="$w" -v n="$N" 'BEGIN { printf "| %s | %.1f | %.2f |\n", m, n / w, w }'
done

have=$($TOOL total)
((have >= EXPORT_N)) || { log "adding accounts: $have -> $EXPORT_N"; $TOOL more 0 "$((EXPORT_N - have))"; }
have=$($TOOL total)
echo
echo "# export-users of $have accounts (default settings)"
echo "| export | accounts | seconds | accounts/s | peak RSS (MB) |"
echo "|---|---|---|---|---|"
for variant in plain with-external-ids; do
    extra=(); [[ $variant == with-external-ids ]] && extra=(--with-external-ids)
    read -r wall _ _ rss code < <(measure "$D/export.$variant" "$SYNBATCH" export-users "${extra[@]}" \
        --homeserver "$URL" --token-file "$D/token" -o "$D/export.csv")
    [[ $code == 0 ]] || { cat "$D/export.$variant.log" >&2; exit 1; }
    rows=$(($(wc -l <"$D/export.csv") - 1))
    [[ $rows == "$have" ]] || { log "export wrote $rows rows, the server has $have"; exit 1; }
    awk -v v="$variant" -v n="$rows" -v w="$wall" -v r="$rss" \
        'BEGIN { printf "| %s | %d | %.2f | %.0f | %.1f |\n", v, n, w, n / w, r / 1024 }'
done
# A fresh server next time: the sweep needs exactly N accounts on it.
SYNBATCH_TEST_DIR=$ROOT python3 "$REPO/tests/synapse/harness.py" stop --all >/dev/null
