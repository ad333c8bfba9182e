#!/usr/bin/env bash
# The whole of synbatch join, for real, on this machine: builds synbatch, starts a throwaway
# Synapse on 127.0.0.1 (the harness the tests use: a pinned matrix-synapse in a venv under
# target/), creates the sample users and rooms, joins the users in samples/new-hires.csv to
# their rooms, and prints the results file. Then it reruns with --resume (nothing left to do)
# and joins everyone in samples/staff.csv to two rooms with --room.
#
# Needs: cargo and python3. The first run installs Synapse (about a minute).
# Stop the server afterwards with: python3 tests/synapse/harness.py stop
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

step "building synbatch"
cargo build --release --quiet
synbatch=target/release/synbatch

step "starting a throwaway Synapse on 127.0.0.1"
harness="python3 tests/synapse/harness.py"
server=$($harness ensure)
url=$(json url <<<"$server")
work=target/demo
mkdir -p "$work"
# The token goes in a file only its owner can read, never on the command line.
(umask 077 && json admin_token <<<"$server" >"$work/admin.token")
echo "homeserver: $url"

step "creating users alice, bob, carol, dave and rooms #general (public), #random (public), #engineering (invite-only)"
for user in alice bob carol dave; do $harness create-user "$user" >/dev/null; done
$harness create-room --alias general >/dev/null
$harness create-room --alias random >/dev/null
$harness create-room --alias engineering --private >/dev/null

step "synbatch join samples/new-hires.csv"
cat samples/new-hires.csv
rm -f "$work/new-hires.results.csv"
set -x
$synbatch join samples/new-hires.csv --homeserver "$url" --token-file "$work/admin.token" \
  -o "$work/new-hires.results.csv" || true
{ set +x; } 2>/dev/null
step "the results file: a pending line before each join is sent, then one final line per row (the remote user is invalid: the admin API joins local users only)"
column -s, -t <"$work/new-hires.results.csv" 2>/dev/null || cat "$work/new-hires.results.csv"

step "the same again with --resume: rows already done are skipped, nothing is sent for them"
set -x
$synbatch join samples/new-hires.csv --homeserver "$url" --token-file "$work/admin.token" \
  -o "$work/new-hires.results.csv" --resume || true
{ set +x; } 2>/dev/null

step "everyone in samples/staff.csv to #general and #random (users x rooms)"
rm -f "$work/staff.results.csv"
set -x
$synbatch join samples/staff.csv --room '#general:localhost' --room '#random:localhost' \
  --homeserver "$url" --token-file "$work/admin.token" -o "$work/staff.results.csv"
{ set +x; } 2>/dev/null
grep -v ',pending,' "$work/staff.results.csv" | cut -d, -f1-3    # the final lines only

step "done: results are in $work/; stop the server with: python3 tests/synapse/harness.py stop"
