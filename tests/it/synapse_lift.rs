//! `--lift-ratelimit` against a real Synapse with its DEFAULT rate limits: the token's account
//! is lifted for the run and gets its own override back exactly, after a normal run, Ctrl-C
//! and an aborted run; a run killed with SIGKILL leaves a record that the next run restores.
//!
//! Each test acts as an admin account of its own (not the harness's admin), so that lifting it
//! does not change what other tests of the shared server see.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chaos_proxy::{ChaosProxy, Config, Outage};
use crate::common::{self, Run, Synapse, enc, finish, results, synapse, synbatch, write};

/// A fresh admin account and the same server seen through its token. The token comes from
/// Synapse's shared-secret registration, a login of the account itself: one made by the admin
/// API's "login as user" acts on behalf of the admin who made it, and Synapse applies that
/// admin's rate limits to it; and password logins are limited to a few, then one every few
/// minutes, under the default limits.
async fn operator(hs: &Synapse) -> (Synapse, String) {
    let localpart = common::unique("lifter");
    let token = register_admin(hs, &localpart);
    let me = Synapse {
        admin_token: token,
        ..hs.clone()
    };
    (me, format!("@{localpart}:{}", hs.server_name))
}

/// Registers an admin with the server's shared secret (in the harness's
/// overrides.yaml, a JSON file); returns its access token.
fn register_admin(hs: &Synapse, localpart: &str) -> String {
    const SCRIPT: &str = r#"
import hashlib, hmac, json, sys, urllib.request
url, overrides, user = sys.argv[1:4]
secret = json.load(open(overrides))["registration_shared_secret"]
endpoint = url + "/_synapse/admin/v1/register"
nonce = json.load(urllib.request.urlopen(endpoint, timeout=30))["nonce"]
mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
mac.update(b"\0".join([nonce.encode(), user.encode(), b"pw-Test-1", b"admin"]))
body = {"nonce": nonce, "username": user, "password": "pw-Test-1", "admin": True,
        "mac": mac.hexdigest()}
request = urllib.request.Request(endpoint, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request, timeout=30))["access_token"])
"#;
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/synapse/harness.py");
    let ensure = std::process::Command::new("python3")
        .arg(&harness)
        .args(["ensure", "--profile", &hs.profile])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        ensure.status.success(),
        "{}",
        String::from_utf8_lossy(&ensure.stderr)
    );
    let state: Value = serde_json::from_slice(&ensure.stdout).unwrap();
    let overrides = Path::new(state["dir"].as_str().unwrap()).join("overrides.yaml");
    let output = std::process::Command::new("python3")
        .args(["-c", SCRIPT, &hs.url])
        .arg(&overrides)
        .arg(localpart)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "register {localpart}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

async fn override_of(hs: &Synapse, user: &str) -> Value {
    let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(user));
    let (status, body) = hs.call("GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn set_override(hs: &Synapse, user: &str, mps: u64, burst: u64) {
    let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", enc(user));
    let body = json!({"messages_per_second": mps, "burst_count": burst});
    let (status, answer) = hs.call("POST", &path, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
}

/// The state files under `state` (XDG_STATE_HOME).
fn records(state: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(state.join("synbatch")) {
        Ok(dir) => dir
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("ratelimit-")
            })
            .collect(),
        Err(_) => vec![],
    }
}

/// `n` fresh users invited to a private room of the operator's, as an input file.
async fn invite_file(hs: &Synapse, op: &Synapse, dir: &Path, n: usize) -> (String, Vec<String>) {
    let users = hs.users("lifted", n).await;
    let (room_id, _) = op.room("lift", false).await;
    let body: String = users.iter().map(|u| format!("{u},{room_id}\n")).collect();
    write(dir, "invite.csv", &format!("user,room\n{body}"));
    (room_id, users)
}

fn command(
    op: &Synapse,
    url: &str,
    dir: &Path,
    state: &Path,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = synbatch();
    cmd.current_dir(dir)
        .env("SYNBATCH_TOKEN", &op.admin_token)
        .env("XDG_STATE_HOME", state)
        .arg(args[0])
        .args(["--homeserver", url])
        .args(&args[1..]);
    cmd
}

/// A lifted `invite` of invite.csv through a proxy that answers 503 to everything from the
/// invite after `after` until a request whose path contains `until` arrives: a real outage.
fn invites_through_an_outage(
    op: &Synapse,
    dir: &Path,
    state: &Path,
    after: usize,
    until: &str,
) -> (ChaosProxy, Run) {
    let mut config = Config::new(1, 0.0, Duration::from_secs(5));
    config.outage = Some(Outage {
        after,
        counting: "/invite".into(),
        until: until.into(),
    });
    let proxy = ChaosProxy::start(&op.url, config);
    let args = [
        "invite",
        "invite.csv",
        "--lift-ratelimit",
        "--retries",
        "1",
        "-j",
        "2",
    ];
    let output = command(op, &proxy.url, dir, state, &args).output().unwrap();
    let run = finish(output, Some(&op.admin_token));
    (proxy, run)
}

fn run_as(op: &Synapse, dir: &Path, state: &Path, args: &[&str]) -> Run {
    let output = command(op, &op.url, dir, state, args).output().unwrap();
    finish(output, Some(&op.admin_token))
}

/// Starts a run whose output is collected by `wait`.
fn spawn(op: &Synapse, dir: &Path, state: &Path, args: &[&str]) -> Child {
    command(op, &op.url, dir, state, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits (bounded) until the results file has `n` `ok` lines.
fn wait_for_ok_lines(path: &Path, n: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = std::fs::read_to_string(path)
            .map(|t| t.lines().filter(|l| l.contains(",ok,")).count())
            .unwrap_or(0);
        if ok >= n {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {n} rows were done"
        );
        assert!(
            Instant::now() < deadline,
            "no {n} rows done within a minute"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// 30 invites into one private room under Synapse's default limits (which let 10 through, then
/// one every few seconds): with the lift none is refused, every invitee is invited, and the
/// account's own override (7/9 here) is back afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn thirty_invites_lifted_and_the_override_restored_exactly() {
    let hs = synapse("default");
    let (op, me) = operator(&hs).await;
    set_override(&hs, &me, 7, 9).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (room_id, users) = invite_file(&hs, &op, dir.path(), 30).await;

    let run = run_as(
        &op,
        dir.path(),
        state.path(),
        &["invite", "invite.csv", "--lift-ratelimit"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("lifted for this run"), "{}", run.stderr);
    assert!(run.stderr.contains("restored"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("hint:"),
        "no 429 hint with the flag: {}",
        run.stderr
    );
    let lines = results(&dir.path().join("invite.results.csv"));
    assert_eq!(lines.len(), 30);
    for line in &lines {
        assert_eq!(line["status"], "ok", "{line:?}");
        // Without the lift, the 11th invite on gets 429s and is attempted again.
        assert_eq!(line["attempts"], "1", "{line:?}");
    }
    for user in &users {
        assert_eq!(
            hs.membership(&room_id, user).await.as_deref(),
            Some("invite"),
            "{user}"
        );
    }
    assert_eq!(
        override_of(&hs, &me).await,
        json!({"messages_per_second": 7, "burst_count": 9})
    );
    assert!(
        records(state.path()).is_empty(),
        "the state file is removed"
    );
}

/// Ctrl-C mid-run: the rows in flight finish, the run exits 130, and the account, which had
/// no override, has none again.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_puts_the_limit_back() {
    let hs = synapse("default");
    let (op, me) = operator(&hs).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    invite_file(&hs, &op, dir.path(), 40).await;
    let args = [
        "invite",
        "invite.csv",
        "--lift-ratelimit",
        "--rate",
        "4",
        "-j",
        "1",
    ];
    let mut child = spawn(&op, dir.path(), state.path(), &args);
    wait_for_ok_lines(&dir.path().join("invite.results.csv"), 2, &mut child);
    // Lifted while it runs, and recorded.
    assert_eq!(
        override_of(&hs, &me).await,
        json!({"messages_per_second": 0, "burst_count": 0})
    );
    assert_eq!(records(state.path()).len(), 1);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let run = finish(child.wait_with_output().unwrap(), Some(&op.admin_token));
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(run.stderr.contains("restored"), "{}", run.stderr);
    assert!(results(&dir.path().join("invite.results.csv")).len() < 40);
    assert_eq!(override_of(&hs, &me).await, json!({}));
    assert!(records(state.path()).is_empty());
}

/// A run that aborts for real: the server (behind a proxy) stops answering anything but 503 a
/// few invites in, so the run gives up ("the homeserver stays unavailable", exit 3). When the
/// server answers again, the restore (retried like every first call) goes through.
#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_run_puts_the_limit_back() {
    let hs = synapse("default");
    let (op, me) = operator(&hs).await;
    set_override(&hs, &me, 2, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    invite_file(&hs, &op, dir.path(), 30).await;
    let (proxy, run) =
        invites_through_an_outage(&op, dir.path(), state.path(), 5, "override_ratelimit");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("stays unavailable"), "{}", run.stderr);
    assert!(run.stderr.contains("restored"), "{}", run.stderr);
    let restores: Vec<_> = proxy
        .records()
        .into_iter()
        .filter(|r| r.path.contains("override_ratelimit") && r.method == "POST")
        .map(|r| r.body)
        .collect();
    assert_eq!(
        restores.len(),
        2,
        "the lift, then the restore: {restores:?}"
    );
    assert_eq!(
        override_of(&hs, &me).await,
        json!({"messages_per_second": 2, "burst_count": 3})
    );
    assert!(records(state.path()).is_empty());
}

/// SIGKILL mid-run: the lift stays, with its record. The next run, of another job, says so
/// and restores the recorded value before it does anything else.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_run_leaves_a_record_the_next_run_restores() {
    let hs = synapse("default");
    let (op, me) = operator(&hs).await;
    set_override(&hs, &me, 3, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (room_id, _) = invite_file(&hs, &op, dir.path(), 40).await;
    let args = [
        "invite",
        "invite.csv",
        "--lift-ratelimit",
        "--rate",
        "4",
        "-j",
        "1",
    ];
    let mut child = spawn(&op, dir.path(), state.path(), &args);
    wait_for_ok_lines(&dir.path().join("invite.results.csv"), 2, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        override_of(&hs, &me).await,
        json!({"messages_per_second": 0, "burst_count": 0}),
        "a killed run cannot restore"
    );
    let left = records(state.path());
    assert_eq!(left.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&left[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the record is the owner's only");
    }

    // Any job: a join through the admin API, which itself needs no lift.
    let user = hs.users("after-kill", 1).await.remove(0);
    write(
        dir.path(),
        "join.csv",
        &format!("user,room\n{user},{room_id}\n"),
    );
    let run = run_as(&op, dir.path(), state.path(), &["join", "join.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("did not put it back"), "{}", run.stderr);
    assert_eq!(
        override_of(&hs, &me).await,
        json!({"messages_per_second": 3, "burst_count": 4})
    );
    assert!(records(state.path()).is_empty());
    // Said once: the run after that finds nothing to restore.
    let again = run_as(&op, dir.path(), state.path(), &["join", "join.csv"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        !again.stderr.contains("did not put it back"),
        "{}",
        again.stderr
    );
}

/// The flag is refused up front for a job that sends nothing as the token's user.
#[test]
fn the_flag_is_refused_for_admin_api_jobs() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "join.csv", "user,room\n@a:x,!r:x\n");
    let output = synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", "unused")
        .args([
            "join",
            "join.csv",
            "--homeserver",
            "http://127.0.0.1:9",
            "--lift-ratelimit",
        ])
        .output()
        .unwrap();
    let run = finish(output, Some("unused"));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--lift-ratelimit"), "{}", run.stderr);
}

/// The server goes away mid-run and stays away: the run aborts, the restore cannot get through,
/// and the run says so (exit 3) and keeps the record; the next run, with the server back,
/// restores.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_that_cannot_get_through_is_left_to_the_next_run() {
    let hs = synapse("default");
    let (op, me) = operator(&hs).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let (room_id, _) = invite_file(&hs, &op, dir.path(), 20).await;
    // The first call of the next run ends the outage: this run's restore meets only 503s.
    let (proxy, run) =
        invites_through_an_outage(&op, dir.path(), state.path(), 3, "/account/whoami");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("could not restore"), "{}", run.stderr);
    assert!(run.stderr.contains("curl -X DELETE"), "{}", run.stderr);
    assert_eq!(
        override_of(&hs, &me).await,
        json!({"messages_per_second": 0, "burst_count": 0})
    );
    assert_eq!(records(state.path()).len(), 1, "the record stays");

    let user = hs.users("after-outage", 1).await.remove(0);
    write(
        dir.path(),
        "join.csv",
        &format!("user,room\n{user},{room_id}\n"),
    );
    // Through the same URL: the record is of this homeserver as the run named it.
    let args = ["join", "join.csv"];
    let output = command(&op, &proxy.url, dir.path(), state.path(), &args)
        .output()
        .unwrap();
    let next = finish(output, Some(&op.admin_token));
    assert_eq!(next.code, 0, "{}", next.stderr);
    assert!(
        next.stderr.contains("did not put it back"),
        "{}",
        next.stderr
    );
    assert_eq!(override_of(&hs, &me).await, json!({}));
    assert!(records(state.path()).is_empty());
}
