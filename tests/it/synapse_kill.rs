//! A SIGKILL sweep against the real Synapse: a run of several hundred rows is killed at seeded
//! points (once K more lines are in the results file, or after a delay), then the same command
//! runs with `--resume`, killed again, a few times; a last `--resume` runs to the end. Then
//! every row's LATEST status must be right: `ok` for every change this sequence of runs made
//! (a row whose change landed just before a kill is still this sequence's work, never
//! `unchanged`), `unchanged` only for what the test did before, nothing `failed`, `pending` or
//! missing, and no row finished twice (`--resume` redoes nothing). The server must show every
//! change, each account once, and each generated password must log in.
//!
//! Seeds: `SYNBATCH_KILL_SEEDS` (comma separated) replaces the default ones to replay a failure.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{self, Synapse, enc, results_file, run_via, synapse, unique, write};

/// Kill and resume this many times before the last `--resume`.
const KILLS: usize = 4;
/// A run that takes longer than this is itself a failure.
const RUN_LIMIT: Duration = Duration::from_secs(180);

fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("SYNBATCH_KILL_SEEDS") {
        Ok(list) => list
            .split(',')
            .map(|s| s.trim().parse().expect("SYNBATCH_KILL_SEEDS: numbers"))
            .collect(),
        Err(_) => defaults.to_vec(),
    }
}

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Once this many more lines are in the results file than when the run started.
    Lines(usize),
    /// This long after the start.
    After(Duration),
}

/// Complete lines in the results file (the header included; a last line without its newline
/// is not counted).
fn lines_in(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
}

fn spawn(hs: &Synapse, dir: &Path, args: &[&str], run: usize) -> Child {
    let out = std::fs::File::create(dir.join(format!("run-{run}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("run-{run}.err"))).unwrap();
    common::synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .arg(args[0])
        .args(["--homeserver", &hs.url])
        .args(&args[1..])
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .expect("run synbatch")
}

/// Runs `args` (results in `results.csv`), killing it at `KILLS` seeded points, resuming
/// after each; then one last `--resume` to the end. Returns what happened, run by run, and
/// the problems found on the way.
fn kill_sweep(
    hs: &Synapse,
    dir: &Path,
    args: &[&str],
    seed: u64,
    max_lines: usize,
) -> (Vec<String>, Vec<String>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let results = dir.join("results.csv");
    let mut log = vec![];
    let mut problems = vec![];
    let with = |resume: bool| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "results.csv"]);
        if resume {
            all.push("--resume");
        }
        all
    };
    for run in 0..KILLS {
        let point = if rng.bool() {
            KillPoint::Lines(rng.usize(1..=max_lines))
        } else {
            KillPoint::After(Duration::from_millis(rng.u64(100..2500)))
        };
        let before = lines_in(&results);
        let started = Instant::now();
        let mut child = spawn(hs, dir, &with(run > 0), run);
        let ended = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            let reached = match point {
                KillPoint::Lines(k) => lines_in(&results) >= before + k,
                KillPoint::After(delay) => started.elapsed() >= delay,
            };
            if reached {
                break None;
            }
            if started.elapsed() > RUN_LIMIT {
                problems.push(format!(
                    "run {run}: its kill point {point:?} not reached in {RUN_LIMIT:?}"
                ));
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if let Some(status) = ended {
            log.push(format!(
                "run {run}: ended by itself ({status}) before its kill point {point:?}"
            ));
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        let now = lines_in(&results);
        log.push(format!(
            "run {run}: SIGKILL at {point:?}, {:?} after the start, with {} lines in the file ({} from this run)",
            started.elapsed(),
            now.saturating_sub(1),
            now - before.min(now)
        ));
    }
    let last = run_via(hs, &hs.url, dir, &with(true), RUN_LIMIT);
    log.push(format!("last run (--resume): exit code {}", last.code));
    if last.code != 0 {
        problems.push(format!(
            "the last --resume ended with exit code {}; stderr:\n{}",
            last.code, last.stderr
        ));
    }
    (log, problems)
}

/// Checks the latest line of each planned row (`id` -> done before the sweep?) and that no row
/// ran again once it was done (a `failed` row runs again on `--resume`, a done one never);
/// `id_of` finds a line's row.
fn check_statuses(
    results: &Path,
    planned: &BTreeMap<String, bool>,
    id_of: impl Fn(&HashMap<String, String>) -> String,
    problems: &mut Vec<String>,
) -> HashMap<String, HashMap<String, String>> {
    let file = results_file(results);
    for torn in &file.torn {
        problems.push(format!("a torn line is left in the results file: {torn}"));
    }
    let mut latest = HashMap::new();
    let mut finals: HashMap<String, Vec<String>> = HashMap::new();
    for line in &file.lines {
        let id = id_of(line);
        if !planned.contains_key(&id) {
            problems.push(format!("a line for no row of the input: {line:?}"));
        }
        if line["status"] != "pending" {
            finals
                .entry(id.clone())
                .or_default()
                .push(format!("{} ({})", line["status"], line["message"]));
        }
        latest.insert(id, line.clone());
    }
    for (id, &pre_done) in planned {
        let want = if pre_done { "unchanged" } else { "ok" };
        match latest.get(id) {
            None => problems.push(format!("{id}: no line in the results")),
            Some(line) if line["status"] != want => problems.push(format!(
                "{id}: latest status {} (http {}, attempts {}): {}; want {want}{}{}",
                line["status"],
                line["http_status"],
                line["attempts"],
                line["message"],
                if pre_done {
                    " (the test did it before the sweep)"
                } else {
                    " (this sequence of runs made the change)"
                },
                match finals.get(id) {
                    Some(lines) if lines.len() > 1 => format!("; its final lines: {lines:?}"),
                    _ => String::new(),
                }
            )),
            Some(_) => {}
        }
        if let Some(lines) = finals.get(id)
            && let Some(done) = lines
                .iter()
                .position(|l| l.starts_with("ok ") || l.starts_with("unchanged "))
            && done + 1 < lines.len()
        {
            problems.push(format!(
                "{id}: ran again after it was done (line {} of {}): {lines:?}",
                done + 1,
                lines.len()
            ));
        }
    }
    latest
}

fn verdict(what: &str, seed: u64, log: &[String], problems: &[String]) {
    const SHOWN: usize = 60;
    let mut shown: Vec<String> = problems.iter().take(SHOWN).cloned().collect();
    if problems.len() > SHOWN {
        shown.push(format!("... and {} more", problems.len() - SHOWN));
    }
    assert!(
        problems.is_empty(),
        "{what}, kill seed {seed} (replay: SYNBATCH_KILL_SEEDS={seed} cargo test --test it synapse_kill::): {} problems\nthe runs:\n  {}\n\n{}",
        problems.len(),
        log.join("\n  "),
        shown.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn join_300_rows_killed_and_resumed() {
    let hs = synapse("relaxed");
    for seed in seeds(&[1]) {
        let tag = unique("kj");
        let users: Vec<String> = (0..100)
            .map(|i| format!("@{tag}-{i}:{}", hs.server_name))
            .collect();
        for chunk in users.chunks(16) {
            let mut set = tokio::task::JoinSet::new();
            for user in chunk {
                let (hs, user) = (hs.clone(), user.clone());
                set.spawn(async move { hs.create_user(&user, json!({})).await });
            }
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }
        }
        // A public room by alias (a second join answers 200), private ones by id and by
        // alias (a second join answers 403 "already in the room").
        let (a_id, a_alias) = hs.room(&format!("{tag}-a"), true).await;
        let (b_id, _) = hs.room(&format!("{tag}-b"), false).await;
        let (c_id, c_alias) = hs.room(&format!("{tag}-c"), false).await;
        let rooms = [(a_id, a_alias), (b_id.clone(), b_id), (c_id, c_alias)];
        let mut planned = BTreeMap::new();
        let mut input = String::from("user,room\n");
        for (i, user) in users.iter().enumerate() {
            for (room_id, cell) in &rooms {
                let pre_done = i < 5;
                if pre_done {
                    let path = format!("/_synapse/admin/v1/join/{}", enc(room_id));
                    let (status, body) =
                        hs.call("POST", &path, Some(json!({"user_id": user}))).await;
                    assert_eq!(status, 200, "pre-join: {body}");
                }
                input.push_str(&format!("{user},{cell}\n"));
                planned.insert(format!("{user} {cell}"), pre_done);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let (hs2, path) = (hs.clone(), dir.path().to_path_buf());
        let (log, mut problems) = tokio::task::spawn_blocking(move || {
            kill_sweep(&hs2, &path, &["join", "in.csv"], seed, 40)
        })
        .await
        .unwrap();
        check_statuses(
            &dir.path().join("results.csv"),
            &planned,
            |l| format!("{} {}", l["user"], l["room"]),
            &mut problems,
        );
        for (room_id, cell) in &rooms {
            let members = hs.members(room_id).await;
            for user in &users {
                if !members.contains(user) {
                    problems.push(format!("{user} {cell}: not in the room on the server"));
                }
            }
        }
        verdict("join of 300 rows", seed, &log, &problems);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_300_rows_killed_and_resumed() {
    let hs = synapse("relaxed");
    for seed in seeds(&[2]) {
        let tag = unique("kc");
        let ids: Vec<String> = (0..300)
            .map(|i| format!("@{tag}-{i}:{}", hs.server_name))
            .collect();
        let mut planned = BTreeMap::new();
        let mut input = String::from("user,displayname\n");
        for (i, id) in ids.iter().enumerate() {
            let pre_done = i < 10;
            if pre_done {
                hs.create_user(id, json!({"displayname": "Pre", "password": "Pre-pw-1"}))
                    .await;
            }
            input.push_str(&format!("{id},Kill {i}\n"));
            planned.insert(id.clone(), pre_done);
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let (hs2, path) = (hs.clone(), dir.path().to_path_buf());
        let (log, mut problems) = tokio::task::spawn_blocking(move || {
            kill_sweep(
                &hs2,
                &path,
                &[
                    "create-users",
                    "in.csv",
                    "--generate-passwords",
                    "passwords.csv",
                ],
                seed,
                60,
            )
        })
        .await
        .unwrap();
        check_statuses(
            &dir.path().join("results.csv"),
            &planned,
            |l| l["user"].clone(),
            &mut problems,
        );

        // Each account once, with what its row said (or, made before, as it was).
        let query = format!("/_synapse/admin/v2/users?name={tag}-&limit=1000&deactivated=true");
        let (status, body) = hs.call("GET", &query, None).await;
        assert_eq!(status, 200, "{body}");
        let mut listed: Vec<String> = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_string())
            .collect();
        listed.sort();
        let before = listed.len();
        listed.dedup();
        if before != listed.len() || listed.len() != ids.len() {
            problems.push(format!(
                "the server lists {before} accounts ({} distinct) for {} rows",
                listed.len(),
                ids.len()
            ));
        }
        for (i, id) in ids.iter().enumerate() {
            let (status, account) = hs.user(id).await;
            let want = if i < 10 {
                "Pre".to_string()
            } else {
                format!("Kill {i}")
            };
            if status != 200 || account["displayname"] != want.as_str() {
                problems.push(format!(
                    "{id}: on the server {status} {:?}, want display name {want:?}",
                    account["displayname"]
                ));
            }
        }

        // The password file: the latest line of each account this sequence made logs in
        // (a kill between writing a line and its PUT leaves an earlier line that never
        // worked); the test's own accounts have none.
        let mut passwords: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let pw_path = dir.path().join("passwords.csv");
        if pw_path.exists() {
            for line in common::results(&pw_path) {
                passwords
                    .entry(line["user"].clone())
                    .or_default()
                    .push(line["password"].clone());
            }
        }
        let mut logins = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            match (i < 10, passwords.get(id)) {
                (true, None) => {}
                (true, Some(lines)) => problems.push(format!(
                    "{id}: made by the test, yet {} lines in the password file",
                    lines.len()
                )),
                (false, None) => problems.push(format!(
                    "{id}: no line in the password file: nobody knows its password"
                )),
                (false, Some(lines)) => {
                    let (hs, id, password) =
                        (hs.clone(), id.clone(), lines.last().unwrap().clone());
                    logins.spawn(async move { (id.clone(), hs.login(&id, &password).await) });
                    if logins.len() >= 8 {
                        let (id, status) = logins.join_next().await.unwrap().unwrap();
                        if status != 200 {
                            problems.push(format!(
                                "{id}: the latest password in the file does not log in ({status})"
                            ));
                        }
                    }
                }
            }
        }
        while let Some(done) = logins.join_next().await {
            let (id, status) = done.unwrap();
            if status != 200 {
                problems.push(format!(
                    "{id}: the latest password in the file does not log in ({status})"
                ));
            }
        }
        verdict("create-users of 300 rows", seed, &log, &problems);
    }
}

/// The checks read a results file that a kill may have cut: a short line is kept apart (and
/// reported), never taken for a row's status nor a reason to panic.
#[test]
fn a_torn_results_line_is_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "results.csv",
        "row,key,status,user\n1,join @a:x !r,ok,@a:x\n2,join @b:x !r,o",
    );
    let file = results_file(&path);
    assert_eq!(file.lines.len(), 1);
    assert_eq!(file.lines[0]["status"], "ok");
    assert_eq!(file.torn, vec!["2,join @b:x !r,o".to_string()]);
}

/// What the sweep's status check finds in a made-up results file: a row redone after it was
/// done, a wrong latest status, a missing row, a stranger; and what it lets pass: a failed row
/// that a later `--resume` finished.
#[test]
fn the_status_check_finds_what_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "results.csv",
        "row,key,status,http_status,attempts,message,user\n\
         1,k a,failed,200,1,made by someone else,a\n\
         1,k a,ok,201,1,,a\n\
         2,k b,ok,201,1,,b\n\
         2,k b,unchanged,,1,account exists,b\n\
         3,k c,pending,,0,,c\n\
         4,k d,unchanged,,1,account exists,d\n\
         9,k z,ok,201,1,,z\n",
    );
    let planned: BTreeMap<String, bool> = [("a", false), ("b", false), ("c", false), ("d", true)]
        .into_iter()
        .chain([("e", false)])
        .map(|(id, pre)| (id.to_string(), pre))
        .collect();
    let mut problems = vec![];
    check_statuses(&path, &planned, |l| l["user"].clone(), &mut problems);
    let found = |what: &str| problems.iter().filter(|p| p.contains(what)).count();
    assert_eq!(found("a line for no row"), 1, "{problems:?}");
    assert_eq!(found("b: latest status unchanged"), 1, "{problems:?}");
    assert_eq!(found("b: ran again after it was done"), 1, "{problems:?}");
    assert_eq!(found("c: latest status pending"), 1, "{problems:?}");
    assert_eq!(found("e: no line"), 1, "{problems:?}");
    assert_eq!(problems.len(), 5, "a and d are right: {problems:?}");
}
