# Shared helpers for the bench/*.sh scripts (sourced, not run).
#
# Provides: REPO, TARGET, WORK (target/bench), SYNBATCH (release binary), need (installs missing
# Debian packages), build, gen_input, stub_start/stub_stop (nginx stub of the Synapse admin API on
# 127.0.0.1), measure (wall seconds + the child's user+sys CPU + peak RSS via /usr/bin/time),
# json, pid_secs, busy_secs, wait_quiet, undisturbed, median, machine_info.

shopt -s inherit_errexit   # a failed check inside $(...) stops the script too
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
WORK=$TARGET/bench
SYNBATCH=$TARGET/release/synbatch
mkdir -p "$WORK"
# One bench script at a time (they share target/bench/ and the stub's port, and would disturb
# each other's figures): wait for the other one to finish.
exec 9>"$WORK/lock"
if ! flock -n 9; then
    echo "[bench] another bench script is running: waiting for it" >&2
    flock -w "${LOCK_WAIT:-3600}" 9 || { echo "[bench] gave up waiting" >&2; exit 1; }
fi

log() { printf '[bench] %s\n' "$*" >&2; }

# need CMD:PACKAGE ... — apt-get install the packages whose command is missing (idempotent).
need() {
    local missing=() pair
    for pair in "$@"; do
        [[ -x ${pair%%:*} ]] || command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "${missing[@]}" >&2; }
}

build() {
    log "cargo build --release"
    (cd "$REPO" && cargo build --release -q 2>"$WORK/build.log") || { cat "$WORK/build.log" >&2; return 1; }
}

# gen_input FILE ROWS [ROOMS] — `user,room` CSV: @uN:bench.local,!roomM with M = N mod ROOMS.
gen_input() {
    local file=$1 rows=$2 rooms=${3:-100}
    [[ -s $file && $(wc -l <"$file") -eq $((rows + 1)) ]] && return 0
    awk -v n="$rows" -v r="$rooms" 'BEGIN { print "user,room"; for (i = 1; i <= n; i++) printf "@u%d:bench.local,!room%d\n", i, i % r }' >"$file"
}

# The stub: nginx answering the four calls `synbatch join` makes, instantly, with fixed JSON.
# STUB_URL has no access log; STUB_LOGGED_URL (the next port) logs each request with its arrival
# time ($msec) to STUB_LOG, to time when a run's first request arrives.
STUB_PORT=${STUB_PORT:-18449}
STUB_URL=http://127.0.0.1:$STUB_PORT
STUB_LOGGED_URL=http://127.0.0.1:$((STUB_PORT + 1))
STUB_LOG=$WORK/nginx/logs/requests.log
STUB_PID=
stub_start() {
    need nginx:nginx curl:curl
    local dir=$WORK/nginx i
    if curl -s -o /dev/null "$STUB_URL/" || curl -s -o /dev/null "$STUB_LOGGED_URL/"; then
        log "port $STUB_PORT or $((STUB_PORT + 1)) is taken (a stub left over?): set STUB_PORT"; return 1
    fi
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/api.conf" <<'CONF'
location = /_matrix/client/v3/account/whoami { return 200 '{"user_id":"@admin:bench.local"}'; }
location ~ ^/_synapse/admin/v1/users/[^/]+/admin$ { return 200 '{"admin":true}'; }
location ~ ^/_synapse/admin/v1/rooms/[^/]+/members$ { return 200 '{"members":[],"total":0}'; }
location ~ ^/_synapse/admin/v1/join/[^/]+$ {
    if ($request_method != POST) { return 405; }
    return 200 '{"room_id":"!r:bench.local"}';
}
location / { return 404 '{"errcode":"M_UNRECOGNIZED"}'; }
CONF
    # One worker: on 2 cores the client (or wrk) needs the other one.
    cat >"$dir/nginx.conf" <<CONF
worker_processes ${STUB_WORKERS:-1};
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/json;
    log_format timed '\$msec \$request_method \$uri';
    server { listen 127.0.0.1:$STUB_PORT backlog=4096; include $dir/api.conf; }
    server { listen 127.0.0.1:$((STUB_PORT + 1)); access_log $STUB_LOG timed; include $dir/api.conf; }
}
CONF
    nginx -t -q -p "$dir" -c "$dir/nginx.conf"
    nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 9>&- &
    STUB_PID=$!
    for i in $(seq 50); do
        kill -0 "$STUB_PID" 2>/dev/null || { log "nginx stub exited: $(tail -n3 "$dir/logs/error.log")"; return 1; }
        curl -fsS -o /dev/null "$STUB_URL/_matrix/client/v3/account/whoami" 2>/dev/null && return 0
        sleep 0.1
    done
    log "nginx stub did not answer on $STUB_URL"; return 1
}
stub_stop() {
    [[ -n $STUB_PID ]] || return 0
    kill "$STUB_PID" 2>/dev/null || true
    wait "$STUB_PID" 2>/dev/null || true
    STUB_PID=
}

# measure OUT CMD... — runs CMD under /usr/bin/time; writes "wall user sys maxrss_kb exit" to OUT.
# The command's own stdout/stderr go to OUT.log.
measure() {
    local out=$1; shift
    need /usr/bin/time:time
    /usr/bin/time -o "$out" -f '%e %U %S %M %x' "$@" >"$out.log" 2>&1 || true
    tail -n1 "$out"   # /usr/bin/time writes "Command exited with non-zero status" first on failure
}

# CPU seconds the whole machine spent busy so far (/proc/stat; softirq included: on loopback it
# runs in, and is charged to, the sending process), and what the stub (nginx) spent.
# busy delta - our process's CPU - the stub's delta = what *other* processes took meanwhile: a
# run beside a compile (another engineer's) shows there, and `undisturbed` measures it again.
busy_secs() { awk -v hz="$(getconf CLK_TCK)" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }
stub_secs() {
    local p t=0
    for p in $STUB_PID $(pgrep -P "$STUB_PID" 2>/dev/null); do
        t=$(awk -v t="$t" -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print t + ($12 + $13) / hz }' "/proc/$p/stat")
    done
    echo "$t"
}

# wait_quiet — before a measurement, wait (at most QUIET_WAIT s, default 300) until the machine
# has been nearly idle (< 0.2 of a core busy) for 2 s, so that a neighbour's compile does not
# land in the figures; goes on anyway after that, and the "other processes" column tells.
wait_quiet() {
    local deadline=$((SECONDS + ${QUIET_WAIT:-300})) a b
    while ((SECONDS < deadline)); do
        a=$(busy_secs); sleep 2; b=$(busy_secs)
        awk -v a="$a" -v b="$b" 'BEGIN { exit !((b - a) / 2 < 0.2) }' && return 0
        log "machine busy ($(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b - a) / 2 }') cores used by others): waiting"
        sleep 8
    done
    log "machine still busy after ${QUIET_WAIT:-300}s: measuring anyway"
}

# undisturbed CMD... — runs CMD (a measurement that prints "WALL ... OTHER_CPU") until other
# processes took at most 0.5 s + 5% of a core meanwhile, at most TRIES times (default 4); prints
# the last line, with " disturbed" added if every try was disturbed.
undisturbed() {
    local i out
    for i in $(seq "${TRIES:-4}"); do
        out=$("$@")
        awk '{ exit !($NF <= 0.5 + 0.05 * $1) }' <<<"$out" && { echo "$out"; return 0; }
        log "disturbed (other processes took ${out##* }s CPU): measuring again"
    done
    echo "$out disturbed"
}

# json KEY — the KEY field of the JSON object on stdin (the harness's state line).
json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# pid_secs PID — CPU seconds (user+sys, all threads) the process has used so far.
pid_secs() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }

# median of the numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

machine_info() {
    printf 'nproc %s; CPU %s; kernel %s; %s; synbatch built from %s\n' "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        "$(uname -r)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
}
