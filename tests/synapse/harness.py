#!/usr/bin/env python3
"""Throwaway Synapse homeservers on 127.0.0.1 for synbatch's tests, benchmarks and demo.

Standard library only: this runs before any venv exists and installs Synapse itself.

    harness.py ensure      [--profile P]
    harness.py stop        [--profile P | --all]
    harness.py create-user LOCALPART [--password PW] [--displayname D] [--profile P]
    harness.py create-room --alias LOCALPART [--private] [--profile P]
    harness.py mas-token   LOCALPART [--admin]          (mas profile: a token for an account)

Every command prints exactly one line of JSON on stdout; progress, pip output and diagnostics go
to stderr. Failures exit non-zero with a message (never a silent skip).

Profiles (rate limits / database / authentication):
  relaxed           every rc_* rate limiter raised so far that it never triggers; SQLite
  default           Synapse's own default limits (to produce real 429s); SQLite
  postgres          relaxed limits; PostgreSQL
  postgres-default  Synapse's own limits; PostgreSQL
  mas               relaxed limits; SQLite; authentication delegated to MAS (a stand-in, below)

PostgreSQL: Debian's packages (`apt-get install postgresql` when no initdb/pg_ctl is found, as
root or through `sudo -n`), psycopg2-binary from PyPI in the venv, and one throwaway cluster
under <root>/pg/ listening on 127.0.0.1 only (no unix socket), password auth for its one role.
PostgreSQL refuses to run as root: under root the cluster belongs to and runs as the `postgres`
system user that the Debian package creates (`nobody` if there is none). Each postgres profile
gets its own database (UTF8, C collation, from template0, as Synapse requires), recreated empty
whenever that profile's Synapse is (re)started. `stop --all` stops the cluster too.

MAS: Synapse with `matrix_authentication_service: {enabled: true, endpoint, secret}`. MAS itself
is not installable here; what Synapse asks of it is served by a stand-in (`mas-standin`, a
threaded http.server on 127.0.0.1 started as a daemon beside Synapse): token introspection
(`POST /oauth2/introspect`, Bearer = the shared secret) for the tokens listed in
<profile>/mas-tokens.json (an admin token gets `urn:synapse:admin:*`, others do not), and the
OpenID metadata. Accounts are made as MAS makes them: `POST /_synapse/mas/provision_user` with the
shared secret. `ensure --profile mas` also prints `mas_url` and `mas_secret`.

Layout, under $SYNBATCH_TEST_DIR or <repo>/target/synapse-test:
  venv/                 one virtualenv with the pinned matrix-synapse, shared by all profiles
  lock                  root-wide flock: guards the venv install
  <profile>.lock        per-profile flock: guards starting/stopping that profile's server
  <profile>/            homeserver.yaml, overrides.yaml, data/, homeserver.log, state.json
  pg/, pg.lock          the PostgreSQL cluster (state.json; cluster/: data/, postgres.log) and
                        its flock. Under root, if PostgreSQL's user cannot reach <root> (a
                        parent closed to others), cluster/ is $TMPDIR/synbatch-pg-<hash> instead
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

SYNAPSE_VERSION = "1.163.2"
SERVER_NAME = "localhost"
ADMIN_LOCALPART = "admin"
# profile -> (relaxed rate limits, database, MAS delegation)
PROFILES = {
    "relaxed": (True, "sqlite", False),
    "default": (False, "sqlite", False),
    "postgres": (True, "postgres", False),
    "postgres-default": (False, "postgres", False),
    "mas": (True, "sqlite", True),
}
PSYCOPG2 = "psycopg2-binary==2.9.13"  # a wheel: nothing to compile, no libpq headers needed
PG_ROLE = "synbatch"
MAS_ADMIN_SCOPE = "urn:synapse:admin:*"
MAS_API_SCOPE = "urn:matrix:client:api:*"

# A server started by another version of this file may run with other overrides (a config key
# added since): it is restarted rather than reused.
HARNESS_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

HEALTH_POLL_INTERVAL = 0.2  # seconds between /health probes while starting
HEALTH_TIMEOUT = 90.0  # seconds to wait for a fresh server to answer /health
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
RELAXED_LIMIT = {"per_second": 100000, "burst_count": 100000}

# Every RatelimitSettings-style key read by synapse/config/ratelimiting.py in 1.163.2 (dotted =
# nested). Deliberately absent: rc_federation (a different shape: window_size/sleep_limit/...,
# and this server has no federation listener) and the legacy rc_messages_per_second /
# rc_message_burst_count (ignored once rc_message is set).
RC_KEYS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_login.address",
    "rc_login.account",
    "rc_login.failed_attempts",
    "rc_admin_redaction",
    "rc_joins.local",
    "rc_joins.remote",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_invites.per_room",
    "rc_invites.per_user",
    "rc_invites.per_issuer",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_presence.per_user",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)

# 127.0.0.1 must never go through a proxy set in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HarnessError(Exception):
    """A failure reported on stderr with a non-zero exit."""


def log(msg: str) -> None:
    print(f"harness: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Paths and locks


def root_dir() -> Path:
    env = os.environ.get("SYNBATCH_TEST_DIR")
    # Absolute: the daemonized Synapse chdirs to /, so every path in its config must be absolute.
    root = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "target" / "synapse-test"
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    return root


def venv_python(root: Path) -> Path:
    return root / "venv" / "bin" / "python"


@contextlib.contextmanager
def flocked(path: Path):
    """Exclusive flock on `path` for the duration of the block (released when the fd closes,
    including when this process dies). Python fds are non-inheritable, so a Synapse started
    inside the block does not keep the lock."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# HTTP


def http(method: str, url: str, token: str | None = None, body: object = None,
         timeout: float = 10.0) -> tuple[int, dict | str, dict]:
    """One request; returns (status, parsed JSON body or text, headers). Never raises on HTTP
    error statuses; raises OSError/URLError when the server cannot be reached."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")  # Synapse rejects non-JSON bodies
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw, headers = resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        status, raw, headers = err.code, err.read(), dict(err.headers)
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text), headers
    except ValueError:
        return status, text, headers


def api(state: dict, method: str, path: str, body: object = None,
        ok: tuple[int, ...] = (200,), deadline_s: float = 120.0) -> tuple[int, dict]:
    """Authenticated call as the admin. Waits out 429s (the `default` profile keeps Synapse's
    limits, e.g. 10 room creations then ~1/min), but only up to `deadline_s` in total."""
    deadline = time.monotonic() + deadline_s
    while True:
        status, payload, headers = http(method, state["url"] + path, state["admin_token"], body)
        if status == 429 and time.monotonic() < deadline:
            wait_ms = payload.get("retry_after_ms") if isinstance(payload, dict) else None
            wait = wait_ms / 1000 if isinstance(wait_ms, (int, float)) else float(headers.get("Retry-After", 1))
            wait = min(max(wait, 0.1), max(deadline - time.monotonic(), 0.1))
            log(f"{method} {path}: 429, retrying in {wait:.1f}s")
            time.sleep(wait)
            continue
        if status not in ok:
            raise HarnessError(f"{method} {path} -> HTTP {status}: {payload}")
        return status, payload if isinstance(payload, dict) else {}


# ---------------------------------------------------------------------------------------------
# Processes


def pid_is_synapse(pid: int | None, profile_dir: Path) -> bool:
    """True if `pid` is a live (non-zombie) Synapse started with this profile's config. Checking
    the command line guards against pid reuse after a reboot or a crash."""
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        return False  # a zombie nobody reaped (e.g. a container whose PID 1 does not reap)
    args = [a.decode(errors="replace") for a in cmdline]
    return "synapse.app.homeserver" in args and str(profile_dir / "homeserver.yaml") in args


def read_pid_file(profile_dir: Path) -> int | None:
    try:
        return int((profile_dir / "homeserver.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def read_state(profile_dir: Path) -> dict | None:
    try:
        return json.loads((profile_dir / "state.json").read_text())
    except (OSError, ValueError):
        return None


def kill_server(pid: int | None, profile_dir: Path) -> bool:
    """SIGTERM, wait up to STOP_GRACE, then SIGKILL. Returns True if something was stopped."""
    if not pid_is_synapse(pid, profile_dir):
        return False
    log(f"stopping Synapse pid {pid} ({profile_dir.name})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if not pid_is_synapse(pid, profile_dir):
            return True
        time.sleep(0.1)
    log(f"pid {pid} ignored SIGTERM for {STOP_GRACE:.0f}s, sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_is_synapse(pid, profile_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_is_synapse(pid, profile_dir):
        raise HarnessError(f"pid {pid} survived SIGKILL")
    return True


def stop_profile(root: Path, profile: str) -> bool:
    profile_dir = root / profile
    stopped = False
    state = read_state(profile_dir) or {}
    # Both the recorded pid and the pid file: a crash between start and state.json leaves only
    # the latter.
    for pid in {state.get("pid"), read_pid_file(profile_dir)}:
        stopped |= kill_server(pid, profile_dir)
    mas_pid = state.get("mas_pid")
    with contextlib.suppress(OSError, ValueError):
        mas_pid = mas_pid or int((profile_dir / "mas.pid").read_text())
    if pid_is_standin(mas_pid, profile_dir):
        log(f"stopping the MAS stand-in pid {mas_pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(mas_pid, signal.SIGKILL)
        stopped = True
    with contextlib.suppress(FileNotFoundError):
        (profile_dir / "state.json").unlink()
    return stopped


def log_tail(profile_dir: Path, lines: int = 40) -> str:
    out = []
    for name in ("startup.log", "homeserver.log"):
        path = profile_dir / name
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()
            if text:
                out.append(f"--- last {min(lines, len(text))} lines of {path} ---")
                out.extend(text[-lines:])
    return "\n".join(out) if out else f"(no log found in {profile_dir})"


# ---------------------------------------------------------------------------------------------
# venv


def ensure_venv(root: Path) -> None:
    """Create/repair <root>/venv with the pinned Synapse. Caller holds the root lock."""
    py = venv_python(root)
    if py.exists():
        # The distribution's version, not synapse.__version__: inside a git work tree (this
        # repo's target/), Synapse appends the repo's branch and commit to __version__, which
        # would then differ after every commit and make a second caller rebuild the venv under
        # a server that is running from it.
        probe = "import importlib.metadata as m; print(m.version('matrix-synapse'))"
        res = subprocess.run([str(py), "-c", probe],
                             stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if res.returncode == 0 and res.stdout.strip() == SYNAPSE_VERSION:
            return
        log(f"venv has Synapse {res.stdout.strip() or '(none)'}, want {SYNAPSE_VERSION}: recreating")
    venv = root / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    log(f"creating {venv} and installing matrix-synapse=={SYNAPSE_VERSION} (~1 min)")
    t0 = time.monotonic()
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 f"matrix-synapse=={SYNAPSE_VERSION}"]):
        # stdout -> our stderr: stdout is reserved for the one JSON line.
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr)
        if res.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)  # never leave a half-installed venv behind
            raise HarnessError(f"{' '.join(cmd)} failed with exit code {res.returncode}")
    log(f"venv ready in {time.monotonic() - t0:.1f}s")


# ---------------------------------------------------------------------------------------------
# PostgreSQL


def pg_bin_dir() -> Path | None:
    """Where initdb, pg_ctl and psql live: Debian keeps them in /usr/lib/postgresql/<major>/bin
    (only wrappers, or nothing, are on PATH)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl", path=str(Path(found).resolve().parent)):
        return Path(found).resolve().parent
    versions = []
    for d in Path("/usr/lib/postgresql").glob("*/bin"):
        with contextlib.suppress(ValueError):
            if (d / "initdb").exists() and (d / "pg_ctl").exists():
                versions.append((float(d.parent.name), d))
    return max(versions)[1] if versions else None


def install_postgres() -> Path:
    """apt-get install postgresql, non-interactive. As root, or through `sudo -n` (never a
    password prompt). Debian's package would create and start a `main` cluster on port 5432;
    a createcluster.conf written first (only if there is none) stops it doing so."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        raise HarnessError("PostgreSQL is not installed and this is not root: "
                           "run `apt-get install postgresql` as root, then retry")
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not sudo and not conf.exists():
        log(f"writing {conf}: create_main_cluster = false (no system cluster on port 5432)")
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("# written by synbatch's tests/synapse/harness.py\ncreate_main_cluster = false\n")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (sudo + ["apt-get", "update", "-q"],
                sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        "-o", "Dpkg::Options::=--force-confold", "postgresql"]):
        log(f"PostgreSQL not found: running {' '.join(cmd)}")
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr, env=env)
        if res.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)} failed with exit code {res.returncode}")
    found = pg_bin_dir()
    if not found:
        raise HarnessError("apt-get installed postgresql but no initdb/pg_ctl is in /usr/lib/postgresql/*/bin")
    return found


def pg_runner() -> dict:
    """subprocess arguments that run a server command as a user PostgreSQL accepts: the
    current user, or, under root (which postgres refuses), the Debian package's `postgres`."""
    if os.geteuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    raise HarnessError("running as root, and there is no `postgres` or `nobody` user to run PostgreSQL as")


def pg_home(root: Path, run_as: dict) -> Path:
    """Where the cluster's data and log live: <root>/pg/cluster, unless PostgreSQL's user
    cannot reach it (under root, a parent such as a `mktemp -d` directory may be closed to
    other users): then a directory of its own in the temp dir, named after <root>."""
    home = root / "pg" / "cluster"
    if not run_as:
        return home
    reach = subprocess.run(["test", "-x", str(root)], stdin=subprocess.DEVNULL, **run_as)
    if reach.returncode == 0:
        return home
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    other = Path(os.environ.get("TMPDIR", "/tmp")) / f"synbatch-pg-{digest}"
    log(f"{root} is closed to uid {run_as['user']}: the cluster goes to {other} instead")
    return other


def pg_alive(state: dict | None) -> bool:
    if not state:
        return False
    try:
        data = Path(state["home"]) / "data"
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError):
        return False
    if str(data).encode() not in cmdline:
        return False
    return psql(state, "postgres", "SELECT 1", check=False).returncode == 0


def psql(pg: dict, db: str, sql: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [str(Path(pg["bin"]) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(pg["port"]), "-U", PG_ROLE, "-d", db, "-c", sql],
        env=dict(os.environ, PGPASSWORD=pg["password"], PGCONNECT_TIMEOUT="5"),
        stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise HarnessError(f"psql {sql!r} failed: {res.stderr.strip()}")
    return res


def read_pg_state(root: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((root / "pg" / "state.json").read_text())
    return None


def ensure_postgres(root: Path) -> dict:
    """The running cluster (started if needed): {bin, home, port, password}."""
    meta = root / "pg"
    with flocked(root / "pg.lock"):
        state = read_pg_state(root)
        if pg_alive(state):
            return state
        bindir = pg_bin_dir() or install_postgres()
        run_as = pg_runner()
        stop_postgres(root, locked=True)
        shutil.rmtree(meta, ignore_errors=True)
        meta.mkdir(parents=True)
        home = pg_home(root, run_as)
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, mode=0o700)
        password = secrets.token_hex(16)
        pwfile = home / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if run_as:
            log(f"running as root: the cluster in {home} belongs to uid {run_as['user']}")
            for path in (home, pwfile):
                os.chown(path, run_as["user"], run_as["group"])
        log(f"initdb {home / 'data'} (PostgreSQL from {bindir})")
        res = subprocess.run(
            [str(bindir / "initdb"), "-D", str(home / "data"), "-U", PG_ROLE,
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"],
            cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True, **run_as)
        pwfile.unlink()
        if res.returncode != 0:
            raise HarnessError(f"initdb failed ({res.returncode}): {res.stdout}{res.stderr}")
        for attempt in range(1, 4):
            port = free_port()
            with open(home / "data" / "postgresql.conf", "a") as conf:
                # 127.0.0.1 only; no unix socket (a long target/ path would overflow its name).
                conf.write(f"\n# synbatch harness\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                           "unix_socket_directories = ''\n")
            log(f"starting PostgreSQL on 127.0.0.1:{port}")
            res = subprocess.run(
                [str(bindir / "pg_ctl"), "-D", str(home / "data"), "-l", str(home / "postgres.log"),
                 "-w", "-t", "60", "start"],
                cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, start_new_session=True, **run_as)
            if res.returncode == 0:
                break
            tail = ""
            with contextlib.suppress(OSError):
                tail = (home / "postgres.log").read_text(errors="replace")[-2000:]
            if attempt < 3 and "could not bind" in tail:
                log("port was taken meanwhile, retrying on another one")
                continue
            raise HarnessError(f"pg_ctl start failed: {res.stderr}\n{tail}")
        state = {"bin": str(bindir), "home": str(home), "port": port, "password": password}
        tmp = meta / "state.json.tmp"
        tmp.write_text(json.dumps(state) + "\n")
        tmp.chmod(0o600)
        tmp.replace(meta / "state.json")
        return state


def stop_postgres(root: Path, locked: bool = False) -> bool:
    with (contextlib.nullcontext() if locked else flocked(root / "pg.lock")):
        state = read_pg_state(root)
        bindir = pg_bin_dir()
        if not state or not bindir:
            return False
        home = Path(state.get("home") or root / "pg")  # an older layout kept data/ in pg/
        stopped = False
        if (home / "data" / "postmaster.pid").exists():
            log(f"stopping PostgreSQL ({home})")
            res = subprocess.run([str(bindir / "pg_ctl"), "-D", str(home / "data"), "-m", "fast", "-w", "stop"],
                                 cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 **pg_runner())
            stopped = res.returncode == 0
        if stopped and root not in home.parents:
            shutil.rmtree(home, ignore_errors=True)  # throwaway data in the temp dir: not kept
        with contextlib.suppress(FileNotFoundError):
            (root / "pg" / "state.json").unlink()
        return stopped


def fresh_database(root: Path, profile: str) -> dict:
    """An empty database for `profile`, as Synapse wants it; returns Synapse's `database`."""
    pg = ensure_postgres(root)
    name = "synapse_" + profile.replace("-", "_")
    psql(pg, "postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(pg, "postgres", f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                         "TEMPLATE template0")
    return {"name": "psycopg2", "args": {
        "user": PG_ROLE, "password": pg["password"], "dbname": name,
        "host": "127.0.0.1", "port": pg["port"], "cp_min": 5, "cp_max": 10}}


def ensure_psycopg2(root: Path) -> None:
    """psycopg2 in the venv. Caller holds the root lock."""
    py = str(venv_python(root))
    if subprocess.run([py, "-c", "import psycopg2"], stdin=subprocess.DEVNULL,
                      capture_output=True).returncode == 0:
        return
    log(f"installing {PSYCOPG2} into the venv")
    res = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", PSYCOPG2],
                         stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr)
    if res.returncode != 0:
        raise HarnessError(f"pip install {PSYCOPG2} failed with exit code {res.returncode}")


# ---------------------------------------------------------------------------------------------
# MAS stand-in


def pid_is_standin(pid: int | None, profile_dir: Path) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        args = [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X") and \
        "mas-standin" in args and str(profile_dir) in args


def start_standin(profile_dir: Path, secret: str) -> tuple[str, int]:
    """Starts the stand-in daemon on a free port; returns (its URL, its pid)."""
    (profile_dir / "mas-secret").write_text(secret)
    (profile_dir / "mas-secret").chmod(0o600)
    tokens = profile_dir / "mas-tokens.json"
    if not tokens.exists():
        tokens.write_text("{}\n")
        tokens.chmod(0o600)
    for _ in range(3):
        port = free_port()
        with open(profile_dir / "mas.log", "ab") as out:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "mas-standin",
                                     str(profile_dir), "--port", str(port)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if http("GET", url + "/health", timeout=1)[0] == 200:
                    log(f"MAS stand-in on {url} (pid {proc.pid})")
                    return url, proc.pid
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
    raise HarnessError(f"the MAS stand-in did not start\n{(profile_dir / 'mas.log').read_text(errors='replace')[-2000:]}")


def standin_token(state: dict, localpart: str, admin: bool) -> str:
    status, body, _ = http("POST", state["mas_url"] + "/_test/tokens", token=state["mas_secret"],
                           body={"username": localpart, "admin": admin})
    if status != 200 or not isinstance(body, dict) or "token" not in body:
        raise HarnessError(f"the MAS stand-in minted no token: {status} {body}")
    return body["token"]


def provision_user(state: dict, localpart: str, displayname: str | None = None) -> None:
    """How MAS makes (or updates) an account: 201 created, 200 updated."""
    body: dict = {"localpart": localpart}
    if displayname is not None:
        body["set_displayname"] = displayname
    status, answer, _ = http("POST", state["url"] + "/_synapse/mas/provision_user",
                             token=state["mas_secret"], body=body)
    if status not in (200, 201):
        raise HarnessError(f"provision_user {localpart} -> {status}: {answer}")


def cmd_mas_standin(args: argparse.Namespace) -> int:
    """The stand-in's server (runs until killed). Stdlib only, loopback only."""
    import http.server
    import threading

    profile_dir = Path(args.dir)
    secret = (profile_dir / "mas-secret").read_text().strip()
    tokens_path = profile_dir / "mas-tokens.json"
    lock = threading.Lock()
    base = f"http://127.0.0.1:{args.port}/"

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self, status: int, body: object) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def body(self) -> bytes:
            return self.rfile.read(min(int(self.headers.get("Content-Length") or 0), 65536))

        def authorised(self) -> bool:
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {secret}".encode())

        def do_GET(self) -> None:
            if self.path == "/health":
                self.answer(200, {"ok": True})
            elif self.path == "/.well-known/openid-configuration":
                self.answer(200, {
                    "issuer": base, "account_management_uri": base + "account/",
                    "authorization_endpoint": base + "authorize", "token_endpoint": base + "oauth2/token",
                    "introspection_endpoint": base + "oauth2/introspect",
                    "response_types_supported": ["code"]})
            else:
                self.answer(404, {"error": "not found"})

        def do_POST(self) -> None:
            if not self.authorised():
                self.answer(401, {"error": "invalid_client"})
                return
            raw = self.body()
            with lock:
                tokens = json.loads(tokens_path.read_text())
                if self.path == "/oauth2/introspect":
                    token = urllib.parse.parse_qs(raw.decode()).get("token", [""])[0]
                    entry = tokens.get(token)
                    if not entry:
                        self.answer(200, {"active": False})
                        return
                    scope = MAS_API_SCOPE + (" " + MAS_ADMIN_SCOPE if entry["admin"] else "")
                    self.answer(200, {"active": True, "scope": scope, "username": entry["username"],
                                      "sub": entry["username"]})
                elif self.path == "/_test/tokens":
                    ask = json.loads(raw)
                    token = "mas_" + secrets.token_urlsafe(24)
                    tokens[token] = {"username": ask["username"], "admin": bool(ask.get("admin"))}
                    tmp = tokens_path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(tokens, indent=1) + "\n")
                    tmp.replace(tokens_path)
                    self.answer(200, {"token": token})
                else:
                    self.answer(404, {"error": "not found"})

        def log_message(self, fmt: str, *a: object) -> None:
            pass  # tokens travel in bodies only, but keep the log quiet anyway

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()
    return 0


# ---------------------------------------------------------------------------------------------
# Server start


def free_port() -> int:
    # Small race (another process may grab it before Synapse binds); start_server retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def overrides_for(profile: str, profile_dir: Path, port: int, database: dict | None = None,
                  mas: tuple[str, str] | None = None) -> dict:
    """The one place Synapse's config is decided: `database` replaces SQLite (postgres
    profiles), `mas` is (stand-in URL, shared secret) for the mas profile."""
    relaxed, _, _ = PROFILES[profile]
    data = profile_dir / "data"
    overrides = {
        # A later -c file replaces whole top-level keys, so each of these is complete.
        "listeners": [{
            "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
            "x_forwarded": False,
            # `client` also serves /_synapse/admin and /_matrix/media.
            "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "sqlite3", "args": {"database": str(data / "homeserver.db")}},
        "media_store_path": str(data / "media_store"),
        "pid_file": str(profile_dir / "homeserver.pid"),
        "log_config": str(profile_dir / f"{SERVER_NAME}.log.config"),  # generated: INFO to homeserver.log
        "registration_shared_secret": secrets.token_hex(32),
        "enable_registration": False,
        # No federation and no key servers: otherwise a remote alias or user id makes Synapse
        # try to reach the internet.
        "federation_domain_whitelist": [],
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "presence": {"enabled": False},
        "url_preview_enabled": False,
        "enable_metrics": False,
        "report_stats": False,
        "bcrypt_rounds": 4,  # fast password hashing: tests create many users
        # --- rooms jobs (create-rooms, notify), for every profile ---
        # Synapse's default is to deny publishing to the room directory, silently: a createRoom
        # with `visibility: public` would leave the room unlisted.
        "room_list_publication_rules": [{"action": "allow"}],
        # `notify` sends server notices: off unless configured. The notices user is created by
        # Synapse at the first notice.
        "server_notices": {
            "system_mxid_localpart": "notices",
            "system_mxid_display_name": "Server Notices",
            "room_name": "Server Notices",
        },
        # --- end of the rooms jobs' block ---
    }
    if database is not None:
        overrides["database"] = database
    if mas is not None:
        # Synapse refuses to start with MAS and password login or registration enabled.
        overrides["matrix_authentication_service"] = {"enabled": True, "endpoint": mas[0], "secret": mas[1]}
        overrides["password_config"] = {"enabled": False}
    if relaxed:
        for key in RC_KEYS:
            node = overrides
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = dict(RELAXED_LIMIT)
    return overrides


def start_server(root: Path, profile: str) -> dict:
    """Fresh profile dir, config, server, admin user. Caller holds the profile lock."""
    profile_dir = root / profile
    py = str(venv_python(root))
    _, db, delegated = PROFILES[profile]
    stop_profile(root, profile)  # leftovers from an old state
    shutil.rmtree(profile_dir, ignore_errors=True)
    (profile_dir / "data").mkdir(parents=True)
    database = fresh_database(root, profile) if db == "postgres" else None
    mas = None
    if delegated:
        secret = secrets.token_hex(32)
        mas_url, mas_pid = start_standin(profile_dir, secret)
        (profile_dir / "mas.pid").write_text(str(mas_pid))
        mas = (mas_url, secret)

    log(f"generating config in {profile_dir}")
    res = subprocess.run(
        [py, "-m", "synapse.app.homeserver", "--server-name", SERVER_NAME,
         "--config-path", str(profile_dir / "homeserver.yaml"),
         "--data-directory", str(profile_dir / "data"),
         "--generate-config", "--report-stats=no"],
        cwd=profile_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if res.returncode != 0:
        raise HarnessError(f"--generate-config failed ({res.returncode}):\n{res.stdout}{res.stderr}")

    for attempt in range(1, 4):
        port = free_port()
        overrides = overrides_for(profile, profile_dir, port, database, mas)
        # JSON is valid YAML, so no YAML writer is needed.
        (profile_dir / "overrides.yaml").write_text(json.dumps(overrides, indent=2) + "\n")
        url = f"http://127.0.0.1:{port}"
        log(f"starting Synapse ({profile}) on {url}")
        with contextlib.suppress(FileNotFoundError):
            (profile_dir / "homeserver.pid").unlink()
        # Output to a file, never to our pipes: a daemon holding the caller's stdout would make
        # `Command::output()` in a Rust test wait forever. The launcher exits once it has forked.
        with open(profile_dir / "startup.log", "ab") as out:
            res = subprocess.run(
                [py, "-m", "synapse.app.homeserver",
                 "-c", str(profile_dir / "homeserver.yaml"),
                 "-c", str(profile_dir / "overrides.yaml"), "--daemonize"],
                cwd=profile_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True)
        if res.returncode != 0:
            raise HarnessError(f"Synapse launcher exited with {res.returncode}\n{log_tail(profile_dir)}")
        try:
            pid = wait_healthy(url, profile_dir)
            break
        except HarnessError:
            if attempt < 3 and "Address already in use" in log_tail(profile_dir, 200):
                log("port was taken meanwhile, retrying on another one")
                stop_profile(root, profile)
                continue
            stop_profile(root, profile)
            raise

    try:
        if mas:
            # MAS makes the account in Synapse, then hands out tokens that it alone vouches for.
            provision_user({"url": url, "mas_secret": mas[1]}, ADMIN_LOCALPART)
            token = {"user_id": f"@{ADMIN_LOCALPART}:{SERVER_NAME}", "password": None,
                     "access_token": standin_token({"mas_url": mas[0], "mas_secret": mas[1]},
                                                   ADMIN_LOCALPART, admin=True)}
        else:
            token = register_admin(url, overrides["registration_shared_secret"])
    except Exception as err:
        stop_profile(root, profile)  # no orphan server that nothing records
        raise HarnessError(f"admin registration failed: {err}\n{log_tail(profile_dir)}") from err
    state = {
        "url": url, "server_name": SERVER_NAME, "admin_user": token["user_id"],
        "admin_token": token["access_token"], "profile": profile, "pid": pid,
        "dir": str(profile_dir), "port": port, "admin_password": token["password"],
        "synapse_version": SYNAPSE_VERSION,
        "harness": HARNESS_DIGEST,
    }
    if mas:
        state.update(mas_url=mas[0], mas_secret=mas[1], mas_pid=mas_pid)
    if not whoami_ok(state):
        stop_profile(root, profile)
        raise HarnessError(f"the new admin token fails whoami\n{log_tail(profile_dir)}")
    tmp = profile_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(profile_dir / "state.json")  # atomic: lock-free fast-path readers see old or new
    return state


def wait_healthy(url: str, profile_dir: Path) -> int:
    """Poll /health until OK; fail early if the daemon died. Returns the daemon's pid."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    t0 = time.monotonic()
    pid = None
    while time.monotonic() < deadline:
        pid = read_pid_file(profile_dir) or pid
        # The pid file appears just after the fork; once it exists the daemon must stay alive.
        if pid is not None and not pid_is_synapse(pid, profile_dir):
            raise HarnessError(f"Synapse (pid {pid}) died during startup\n{log_tail(profile_dir)}")
        try:
            status, body, _ = http("GET", url + "/health", timeout=2)
            if status == 200 and body == "OK" and pid is not None:
                log(f"healthy after {time.monotonic() - t0:.1f}s (pid {pid})")
                return pid
        except OSError:
            pass  # not listening yet
        time.sleep(HEALTH_POLL_INTERVAL)
    raise HarnessError(f"Synapse not healthy at {url} after {HEALTH_TIMEOUT:.0f}s\n{log_tail(profile_dir)}")


def register_admin(url: str, shared_secret: str) -> dict:
    """Shared-secret registration: GET a one-use nonce, POST with an HMAC-SHA1 over
    nonce\\0user\\0password\\0admin. Not subject to the login rate limits."""
    endpoint = url + "/_synapse/admin/v1/register"
    status, body, _ = http("GET", endpoint)
    if status != 200 or not isinstance(body, dict) or "nonce" not in body:
        raise HarnessError(f"GET {endpoint} -> {status}: {body}")
    password = secrets.token_urlsafe(24)
    mac = hmac.new(shared_secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\0".join([body["nonce"].encode(), ADMIN_LOCALPART.encode(), password.encode(), b"admin"]))
    status, reg, _ = http("POST", endpoint, body={
        "nonce": body["nonce"], "username": ADMIN_LOCALPART, "password": password,
        "admin": True, "mac": mac.hexdigest(),
    })
    if status != 200 or not isinstance(reg, dict) or "access_token" not in reg:
        raise HarnessError(f"POST {endpoint} -> {status}: {reg}")
    return {"user_id": reg["user_id"], "access_token": reg["access_token"], "password": password}


def whoami_ok(state: dict) -> bool:
    status, body, _ = http("GET", state["url"] + "/_matrix/client/v3/account/whoami",
                           token=state["admin_token"], timeout=3)
    return status == 200 and isinstance(body, dict) and body.get("user_id") == state["admin_user"]


def healthy_state(root: Path, profile: str) -> dict | None:
    """The recorded server if it is alive, of the pinned version, and its admin token works."""
    profile_dir = root / profile
    state = read_state(profile_dir)
    if not state or state.get("synapse_version") != SYNAPSE_VERSION:
        return None
    if state.get("harness") != HARNESS_DIGEST:
        # Started by another version of this file (other overrides): restart it with these.
        return None
    if not pid_is_synapse(state.get("pid"), profile_dir):
        return None
    if PROFILES[profile][2] and not pid_is_standin(state.get("mas_pid"), profile_dir):
        return None
    try:
        status, body, _ = http("GET", state["url"] + "/health", timeout=3)
        return state if status == 200 and body == "OK" and whoami_ok(state) else None
    except (OSError, KeyError):
        return None


def ensure(profile: str) -> dict:
    root = root_dir()
    # Fast path without any lock: a healthy server needs no coordination.
    state = healthy_state(root, profile)
    if state:
        return state
    # Per-profile lock for the whole slow path, so exactly one caller starts this profile's
    # server and the others, once they get the lock, find it running. Lock order is always
    # profile lock -> root lock, never the reverse, so no deadlock.
    with flocked(root / f"{profile}.lock"):
        state = healthy_state(root, profile)
        if state:
            return state
        with flocked(root / "lock"):  # the venv is shared by all profiles
            ensure_venv(root)
            if PROFILES[profile][1] == "postgres":
                ensure_psycopg2(root)
        return start_server(root, profile)


def public_view(state: dict) -> dict:
    keys = ("url", "server_name", "admin_user", "admin_token", "profile", "pid", "dir",
            "mas_url", "mas_secret")
    return {k: state[k] for k in keys if k in state}


# ---------------------------------------------------------------------------------------------
# Subcommands


def cmd_ensure(args: argparse.Namespace) -> dict:
    return public_view(ensure(args.profile))


def cmd_stop(args: argparse.Namespace) -> dict:
    root = root_dir()
    profiles = list(PROFILES) if args.all else [args.profile]
    stopped = []
    for profile in profiles:
        with flocked(root / f"{profile}.lock"):  # never race an `ensure` of the same profile
            if stop_profile(root, profile):
                stopped.append(profile)
    # The cluster outlives `stop --profile postgres` (other postgres profiles may use it).
    if args.all and stop_postgres(root):
        stopped.append("postgresql")
    return {"stopped": stopped}


def cmd_create_user(args: argparse.Namespace) -> dict:
    state = ensure(args.profile)
    user_id = f"@{args.localpart}:{SERVER_NAME}"
    if PROFILES[args.profile][2]:
        if args.password is not None:
            raise HarnessError("the mas profile has no passwords (MAS owns them): leave out --password")
        provision_user(state, args.localpart, args.displayname)
        return {"user_id": user_id}
    body = {}
    if args.password is not None:
        body["password"] = args.password
    if args.displayname is not None:
        body["displayname"] = args.displayname
    # 201 created, 200 already existed (and was updated with the given fields).
    api(state, "PUT", "/_synapse/admin/v2/users/" + urllib.parse.quote(user_id, safe="@:"),
        body, ok=(200, 201))
    return {"user_id": user_id}


def cmd_create_room(args: argparse.Namespace) -> dict:
    state = ensure(args.profile)
    alias = f"#{args.alias}:{SERVER_NAME}"
    directory = "/_matrix/client/v3/directory/room/" + urllib.parse.quote(alias, safe="")

    def existing() -> str | None:
        status, body = api(state, "GET", directory, ok=(200, 404))
        return body.get("room_id") if status == 200 else None

    room_id = existing()
    if room_id is None:
        if args.private:
            body = {"preset": "private_chat", "room_alias_name": args.alias}
        else:
            body = {"preset": "public_chat", "visibility": "public", "room_alias_name": args.alias}
        status, resp = api(state, "POST", "/_matrix/client/v3/createRoom", body, ok=(200, 400))
        if status == 200:
            room_id = resp["room_id"]
        elif resp.get("errcode") == "M_ROOM_IN_USE":
            room_id = existing()  # another caller created it in between
        if room_id is None:
            raise HarnessError(f"createRoom for {alias} -> {status}: {resp}")
    return {"room_id": room_id, "alias": alias}


def cmd_mas_token(args: argparse.Namespace) -> dict:
    if not PROFILES[args.profile][2]:
        raise HarnessError(f"profile {args.profile} does not delegate to MAS")
    return {"token": standin_token(ensure(args.profile), args.localpart, args.admin)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_profile(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--profile", choices=PROFILES, default="relaxed")
        return p

    with_profile(sub.add_parser("ensure", help="start (or find) a healthy server, print its JSON"))
    p = sub.add_parser("stop", help="stop the profile's server (idempotent)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--profile", choices=PROFILES, default="relaxed")
    group.add_argument("--all", action="store_true", help="stop every profile's server")
    p = with_profile(sub.add_parser("create-user", help="create @LOCALPART:localhost via the admin API"))
    p.add_argument("localpart")
    p.add_argument("--password")
    p.add_argument("--displayname")
    p = with_profile(sub.add_parser("create-room", help="create (or find) a room with an alias, as the admin"))
    p.add_argument("--alias", required=True, help="alias localpart (no '#', no server)")
    p.add_argument("--private", action="store_true", help="private_chat preset, not in the directory")
    p = with_profile(sub.add_parser("mas-token", help="mas profile: a new token for @LOCALPART"))
    p.add_argument("localpart")
    p.add_argument("--admin", action="store_true", help="with the scope urn:synapse:admin:*")
    p = sub.add_parser("mas-standin")  # internal: the stand-in daemon itself
    p.add_argument("dir")
    p.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "mas-standin":
        return cmd_mas_standin(args)

    handler = {"ensure": cmd_ensure, "stop": cmd_stop, "create-user": cmd_create_user,
               "create-room": cmd_create_room, "mas-token": cmd_mas_token}[args.command]
    try:
        result = handler(args)
    except (HarnessError, OSError) as err:
        print(f"harness.py {args.command}: error: {err}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
