//! One run of each row job through the chaos proxy (tests/it/chaos_proxy.rs) in front of the
//! real Synapse, about a quarter of the requests faulted, then the server's real state read
//! directly and compared with each row's status:
//!
//! - `ok`: the change is on the server (and for the SSO jobs the message holds the list
//!   before and after, right, which is what undoing it takes);
//! - `unchanged`: the test had done it before the run;
//! - `failed`: the change is NOT on the server (a failed row whose change landed is the bug
//!   these tests are for);
//! - every row has exactly one final line, and no line is left `pending`.
//!
//! One run, no `--retry-failed`; `--retries 8` so that an honest row practically never runs
//! out of retries, and `--timeout 2` so that `late` faults bite. Faults hit every request,
//! the startup's whoami and admin check included.
//!
//! Seeds: each test runs its default seeds, or the ones in `SYNBATCH_CHAOS_SEEDS` (comma
//! separated) to replay a failure. A failure names its seed and shows, for each wrong row, what
//! the proxy did to every request that mentions the row's user. The default seeds of a test
//! together use every fault kind (each forwarding one on a change), hold a change until the
//! client's retry was answered, and fault the startup's whoami or admin check once; the test
//! checks that (when every run got past its startup), since a change in the requests synbatch
//! sends changes what a seed does, and then asks for other seeds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::chaos_proxy::{ChaosProxy, Config, Fault};
use crate::common::{self, Run, Synapse, enc, results_file, run_via, synapse, unique, write};

const RATE: f64 = 0.25;
const TIMEOUT_SECS: u64 = 2;
/// A run that takes longer than this is killed and reported.
const RUN_LIMIT: Duration = Duration::from_secs(240);
const ROWS: usize = 60;
/// Rows 0..PRE_DONE are done by the test before the run: they must come out `unchanged`.
const PRE_DONE: usize = 6;

type Line = HashMap<String, String>;

fn seeds(defaults: &[u64]) -> (Vec<u64>, bool) {
    match std::env::var("SYNBATCH_CHAOS_SEEDS") {
        Ok(list) => (
            list.split(',')
                .map(|s| s.trim().parse().expect("SYNBATCH_CHAOS_SEEDS: numbers"))
                .collect(),
            false,
        ),
        Err(_) => (defaults.to_vec(), true),
    }
}

/// What the server shows for one row after the run.
#[derive(Debug, Clone, PartialEq)]
enum State {
    /// As before the run: the row's change is absent.
    Before,
    /// The row's change is there.
    After,
    /// Neither: what the server shows.
    Other(String),
}

/// One row of the input, as the test knows it.
struct Planned {
    /// How its results line is found: the `user` field, and for `join` a space and the room.
    id: String,
    /// The user, to find the proxy's records about it.
    who: String,
    /// Done by the test before the run.
    pre_done: bool,
}

/// One chaos run and what is wrong with it so far.
struct Chaos {
    test: &'static str,
    proxy: ChaosProxy,
    run: Run,
    latest: HashMap<String, Line>,
    problems: Vec<String>,
}

/// Creates accounts directly on Synapse, sixteen at a time.
async fn create_all(hs: &Synapse, accounts: Vec<(String, Value)>) {
    for chunk in accounts.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for (id, body) in chunk.iter().cloned() {
            let hs = hs.clone();
            set.spawn(async move { hs.create_user(&id, body).await });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
    }
}

async fn deactivate(hs: &Synapse, user: &str) {
    let path = format!("/_synapse/admin/v1/deactivate/{}", enc(user));
    let (status, body) = hs.call("POST", &path, Some(json!({"erase": false}))).await;
    assert_eq!(status, 200, "deactivate {user}: {body}");
}

fn line_text(line: &Line) -> String {
    format!(
        "{} (http {}, {}, attempts {}): {}",
        line["status"], line["http_status"], line["errcode"], line["attempts"], line["message"]
    )
}

/// Runs synbatch once through a fresh chaos proxy and checks what needs no server state: the
/// exit code, one final line per row, no `pending` left, the proxy's own health.
async fn chaos_run(
    hs: &Synapse,
    test: &'static str,
    seed: u64,
    normalize: Vec<(String, String)>,
    dir: &Path,
    args: &[&str],
    rows: &[Planned],
) -> Chaos {
    let timeout = Duration::from_secs(TIMEOUT_SECS);
    let mut config = Config::new(seed, RATE, timeout);
    config.normalize = normalize;
    let proxy = ChaosProxy::start(&hs.url, config);
    let timeout_arg = TIMEOUT_SECS.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "-o",
        "results.csv",
        "-j",
        "8",
        "--retries",
        "8",
        "--timeout",
        &timeout_arg,
    ]);
    let (hs2, url, dir2) = (hs.clone(), proxy.url.clone(), dir.to_path_buf());
    let owned: Vec<String> = all.iter().map(|s| s.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        run_via(&hs2, &url, &dir2, &args, RUN_LIMIT)
    })
    .await
    .unwrap();
    let mut problems = vec![];
    // A late request may still be on its way to Synapse: the state is read once it landed.
    if !proxy.settle(Duration::from_secs(30)) {
        problems.push("the proxy still had requests in flight 30 s after the run".into());
    }
    for p in proxy.problems() {
        problems.push(format!("proxy: {p}"));
    }
    if proxy.capped() {
        problems.push("the proxy's request cap was reached".into());
    }
    let mut latest = HashMap::new();
    let path = dir.join("results.csv");
    if !path.exists() {
        problems.push(format!(
            "no results file: the run ended (exit code {}) before any row",
            run.code
        ));
    } else {
        let file = results_file(&path);
        for torn in &file.torn {
            problems.push(format!("a torn results line: {torn}"));
        }
        let mut finals: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in &file.lines {
            let id = line_id(test, line);
            if !rows.iter().any(|r| r.id == id) {
                problems.push(format!("a line for no row of the input: {line:?}"));
            }
            if line["status"] != "pending" {
                finals.entry(id.clone()).or_default().push(line_text(line));
            }
            latest.insert(id, line.clone());
        }
        for (id, lines) in &finals {
            if lines.len() > 1 {
                problems.push(format!(
                    "{id}: {} final lines in one run: {lines:?}",
                    lines.len()
                ));
            }
        }
        let failed = latest.values().any(|l| l["status"] == "failed");
        let want = if failed { 1 } else { 0 };
        if run.code != want {
            problems.push(format!(
                "exit code {} (want {want}: {} failed rows); stderr:\n{}",
                run.code,
                if failed { "some" } else { "no" },
                tail(&run.stderr)
            ));
        }
    }
    Chaos {
        test,
        proxy,
        run,
        latest,
        problems,
    }
}

fn line_id(test: &str, line: &Line) -> String {
    if test == "join" {
        format!("{} {}", line["user"], line["room"])
    } else {
        line["user"].clone()
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Chaos {
    /// Compares one row's latest status with the server's state; `ok_check` says what is
    /// wrong with an `ok` line's message, if anything.
    fn judge(
        &mut self,
        row: &Planned,
        state: State,
        ok_check: impl FnOnce(&Line) -> Option<String>,
    ) {
        let Some(line) = self.latest.get(&row.id).cloned() else {
            if self.run.code != 3 && self.run.code != -1 {
                let problem = format!("{}: no line in the results (server: {state:?})", row.id);
                self.problem(row, problem);
            }
            return;
        };
        let status = line["status"].as_str();
        let wrong = match (row.pre_done, status, &state) {
            (true, "unchanged", State::After) => None,
            (true, _, State::After) => Some("the test had done it before the run: want unchanged"),
            (true, _, _) => {
                Some("the test had done it before the run, and the server no longer shows it")
            }
            (false, "ok", State::After) => None,
            (false, "ok", _) => Some("ok, but the change is not on the server"),
            (false, "failed", State::Before) => None,
            (false, "failed", State::After) => {
                Some("failed, but the change IS on the server (this run made it)")
            }
            (false, "failed", _) => Some("failed, and the server shows something else"),
            (false, "unchanged", _) => {
                Some("unchanged, but the test had not done it: this run made the change")
            }
            (false, "pending", _) => Some("still pending at the end of the run"),
            (false, _, _) => Some("an unexpected status"),
        };
        if let Some(wrong) = wrong {
            let problem = format!(
                "{}: {} -- {wrong} (server: {state:?})",
                row.id,
                line_text(&line)
            );
            self.problem(row, problem);
        } else if status == "ok"
            && let Some(why) = ok_check(&line)
        {
            let problem = format!("{}: {} -- {why}", row.id, line_text(&line));
            self.problem(row, problem);
        }
    }

    fn problem(&mut self, row: &Planned, problem: String) {
        self.problems.push(format!(
            "{problem}\n  the proxy, for {}:\n{}",
            row.who,
            self.proxy.trace(&row.who)
        ));
    }

    /// The problems, each under a line that says how to replay the run.
    fn finish(self) -> Vec<String> {
        if self.problems.is_empty() {
            return vec![];
        }
        let head = format!(
            "== {} {} (replay: SYNBATCH_CHAOS_SEEDS={} cargo test --test it synapse_chaos::{}); exit code {}; stderr:\n{}",
            self.test,
            self.proxy.summary(),
            self.proxy.seed(),
            self.test.replace('-', "_"),
            self.run.code,
            tail(&self.run.stderr)
        );
        let mut out = vec![head];
        out.extend(self.problems);
        out
    }
}

/// What a test's seeds made the proxy do, for the check that every fault kind was exercised.
#[derive(Default)]
struct Coverage {
    /// A run ended before its rows (exit code 3, or killed): its problems say so, and the
    /// faults its rows would have met are missing here.
    cut_short: bool,
    /// Fault kinds seen on requests that change something (POST, PUT).
    on_changes: Vec<Fault>,
    /// A change held for the client's retry to be answered first (the worst moment to land).
    late_after_retry: bool,
    any: Vec<Fault>,
    startup_faulted: bool,
}

impl Coverage {
    fn add(&mut self, chaos: &Chaos) {
        self.cut_short |= chaos.run.code == 3 || chaos.run.code == -1;
        for r in chaos.proxy.records() {
            if r.fault == Fault::Pass {
                continue;
            }
            self.any.push(r.fault);
            if r.method == "POST" || r.method == "PUT" {
                self.on_changes.push(r.fault);
                // Chosen to wait for the client's retry; whether the retry came within the
                // hold depends on the machine's load, so either outcome counts as covered.
                self.late_after_retry |=
                    r.note.starts_with("held until #") || r.note.ends_with("no retry came");
            }
            if r.path.contains("/account/whoami") || r.path.ends_with("/admin") {
                self.startup_faulted = true;
            }
        }
    }

    /// With the default seeds, every fault kind must have been used, each forwarding one on a
    /// change, and the startup calls faulted at least once (checked when every run went to
    /// its end).
    fn check(&self, defaults: bool, problems: &mut Vec<String>) {
        if !defaults || self.cut_short {
            return;
        }
        for fault in Fault::ALL {
            let seen = if fault.forwards() {
                self.on_changes.contains(&fault)
            } else {
                self.any.contains(&fault)
            };
            if !seen {
                problems.push(format!(
                    "coverage: the default seeds never used {}{}: pick other seeds",
                    fault.name(),
                    if fault.forwards() { " on a change" } else { "" }
                ));
            }
        }
        if !self.late_after_retry {
            problems.push(
                "coverage: the default seeds never held a change for the client's retry".into(),
            );
        }
        if !self.startup_faulted {
            problems
                .push("coverage: the default seeds never faulted whoami or the admin check".into());
        }
    }
}

fn verdict(test: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{test} through the chaos proxy: {} problems\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// Parses `was [a, b]; now [c]` into sorted lists.
fn was_now(message: &str) -> Option<(Vec<String>, Vec<String>)> {
    let at = message.find("was [")?;
    let (was, rest) = message[at + 5..].split_once("]; now [")?;
    let (now, _) = rest.split_once(']')?;
    let list = |text: &str| {
        let mut items: Vec<String> = text
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        items.sort();
        items
    };
    Some((list(was), list(now)))
}

fn sorted(mut list: Vec<String>) -> Vec<String> {
    list.sort();
    list
}

// ---------------------------------------------------------------------------------------------
// join

#[tokio::test(flavor = "multi_thread")]
async fn join() {
    let hs = synapse("relaxed");
    let (seeds, defaults) = seeds(&[11, 10]);
    let mut problems = vec![];
    let mut coverage = Coverage::default();
    for seed in seeds {
        let tag = unique("cj");
        let users: Vec<String> = (0..ROWS / 2)
            .map(|i| format!("@{tag}-{i}:{}", hs.server_name))
            .collect();
        create_all(&hs, users.iter().map(|u| (u.clone(), json!({}))).collect()).await;
        let (pub_id, pub_alias) = hs.room(&format!("{tag}-pub"), true).await;
        let (priv_id, _) = hs.room(&format!("{tag}-priv"), false).await;
        // A private room by id (Synapse invites, then joins; a second join is a 403), a public
        // one by alias (a second join is a 200).
        let rooms = [
            (pub_id.clone(), pub_alias.clone()),
            (priv_id.clone(), priv_id.clone()),
        ];
        let mut rows = vec![];
        let mut input = String::from("user,room\n");
        for (i, user) in users.iter().enumerate() {
            for (room_id, cell) in &rooms {
                let pre_done = i < PRE_DONE / 2;
                if pre_done {
                    let path = format!("/_synapse/admin/v1/join/{}", enc(room_id));
                    let (status, body) =
                        hs.call("POST", &path, Some(json!({"user_id": user}))).await;
                    assert_eq!(status, 200, "pre-join: {body}");
                }
                input.push_str(&format!("{user},{cell}\n"));
                rows.push(Planned {
                    id: format!("{user} {cell}"),
                    who: user.clone(),
                    pre_done,
                });
            }
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let normalize = vec![
            (pub_alias.clone(), "~pubalias".into()),
            (tag.clone(), "~tag".into()),
            (pub_id.clone(), "~pub".into()),
            (priv_id.clone(), "~priv".into()),
        ];
        let mut chaos = chaos_run(
            &hs,
            "join",
            seed,
            normalize,
            dir.path(),
            &["join", "in.csv"],
            &rows,
        )
        .await;
        let members = [hs.members(&pub_id).await, hs.members(&priv_id).await];
        for (n, row) in rows.iter().enumerate() {
            let state = if members[n % 2].contains(&row.who) {
                State::After
            } else {
                State::Before
            };
            chaos.judge(row, state, |_| None);
        }
        coverage.add(&chaos);
        problems.extend(chaos.finish());
    }
    coverage.check(defaults, &mut problems);
    verdict("join", problems);
}

// ---------------------------------------------------------------------------------------------
// create-users

/// The accounts of a create-users test: `(user id, row's display name)`; the first PRE_DONE
/// exist before the run with the display name "Pre" and the password "Pre-pw-1".
async fn create_users_setup(hs: &Synapse, tag: &str) -> (Vec<Planned>, String) {
    let mut rows = vec![];
    let mut input = String::from("user,displayname\n");
    let mut pre = vec![];
    for i in 0..ROWS {
        let id = format!("@{tag}-{i}:{}", hs.server_name);
        let pre_done = i < PRE_DONE;
        if pre_done {
            pre.push((
                id.clone(),
                json!({"displayname": "Pre", "password": "Pre-pw-1"}),
            ));
        }
        input.push_str(&format!("{id},Chaos {i}\n"));
        rows.push(Planned {
            id: id.clone(),
            who: id,
            pre_done,
        });
    }
    create_all(hs, pre).await;
    (rows, input)
}

/// The account of row `i`: made by the row (its display name), as before (absent, or the
/// test's own), or something else.
async fn account_state(hs: &Synapse, row: &Planned, i: usize) -> State {
    let (status, account) = hs.user(&row.who).await;
    let name = account["displayname"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match (status, row.pre_done) {
        (404, false) => State::Before,
        (200, false) if name == format!("Chaos {i}") => State::After,
        (200, true) if name == "Pre" => State::After,
        _ => State::Other(format!("{status}, display name {name:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users() {
    let hs = synapse("relaxed");
    let (seeds, defaults) = seeds(&[31, 21]);
    let mut problems = vec![];
    let mut coverage = Coverage::default();
    for seed in seeds {
        let tag = unique("cc");
        let (rows, input) = create_users_setup(&hs, &tag).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let normalize = vec![(tag.clone(), "~tag".into())];
        let mut chaos = chaos_run(
            &hs,
            "create-users",
            seed,
            normalize,
            dir.path(),
            &["create-users", "in.csv"],
            &rows,
        )
        .await;
        for (i, row) in rows.iter().enumerate() {
            let state = account_state(&hs, row, i).await;
            chaos.judge(row, state, |_| None);
        }
        coverage.add(&chaos);
        problems.extend(chaos.finish());
    }
    coverage.check(defaults, &mut problems);
    verdict("create-users", problems);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_generate_passwords() {
    let hs = synapse("relaxed");
    let (seeds, defaults) = seeds(&[5, 33]);
    let mut problems = vec![];
    let mut coverage = Coverage::default();
    for seed in seeds {
        let tag = unique("cp");
        let (rows, input) = create_users_setup(&hs, &tag).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let normalize = vec![(tag.clone(), "~tag".into())];
        let mut chaos = chaos_run(
            &hs,
            "create-users-generate-passwords",
            seed,
            normalize,
            dir.path(),
            &[
                "create-users",
                "in.csv",
                "--generate-passwords",
                "passwords.csv",
            ],
            &rows,
        )
        .await;
        for (i, row) in rows.iter().enumerate() {
            let state = account_state(&hs, row, i).await;
            chaos.judge(row, state, |_| None);
        }

        // Every password in the file logs in, and each account has one line at most: exactly
        // one for an account this run made, none for one it left alone.
        let path = dir.path().join("passwords.csv");
        let mut passwords: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if path.exists() {
            for line in common::results(&path) {
                passwords
                    .entry(line["user"].clone())
                    .or_default()
                    .push(line["password"].clone());
            }
        }
        let mut logins = tokio::task::JoinSet::new();
        for (user, list) in &passwords {
            for (n, password) in list.iter().enumerate() {
                let (hs, user, password) = (hs.clone(), user.clone(), password.clone());
                logins.spawn(async move { (user.clone(), n, hs.login(&user, &password).await) });
            }
        }
        let mut failed_logins = vec![];
        while let Some(done) = logins.join_next().await {
            let (user, n, status) = done.unwrap();
            if status != 200 {
                failed_logins.push((user, n, status));
            }
        }
        failed_logins.sort();
        for (user, n, status) in failed_logins {
            let row = rows.iter().find(|r| r.who == user);
            let status_text = chaos
                .latest
                .get(&user)
                .map_or("no line".to_string(), line_text);
            let problem = format!(
                "{user}: password line {} of the file does not log in ({status}); its row: {status_text}",
                n + 1
            );
            match row {
                Some(row) => chaos.problem(row, problem),
                None => chaos.problems.push(problem),
            }
        }
        for row in &rows {
            let lines = passwords.get(&row.who).map_or(0, Vec::len);
            let status = chaos
                .latest
                .get(&row.id)
                .map_or("", |l| l["status"].as_str())
                .to_string();
            let want = usize::from(status == "ok");
            if lines != want {
                let problem = format!(
                    "{}: {lines} lines in the password file, want {want} for a row {status}",
                    row.id
                );
                chaos.problem(row, problem);
            }
            if row.pre_done && hs.login(&row.who, "Pre-pw-1").await != 200 {
                let problem = format!("{}: its own password no longer logs in", row.id);
                chaos.problem(row, problem);
            }
        }
        coverage.add(&chaos);
        problems.extend(chaos.finish());
    }
    coverage.check(defaults, &mut problems);
    verdict("create-users --generate-passwords", problems);
}

// ---------------------------------------------------------------------------------------------
// set-external-id, remove-external-id

/// An SSO job's account: its mappings before the run and what the row makes of them.
struct Mapping {
    before: Vec<String>,
    after: Vec<String>,
}

fn pairs(list: &[String]) -> Value {
    Value::Array(
        list.iter()
            .map(|p| {
                let (provider, id) = p.split_once(':').unwrap();
                json!({"auth_provider": provider, "external_id": id})
            })
            .collect(),
    )
}

/// Judges an SSO job's rows: the server's list against before and after, and an `ok`
/// message's "was [..]; now [..]" against them too.
async fn judge_mappings(hs: &Synapse, chaos: &mut Chaos, rows: &[Planned], maps: &[Mapping]) {
    for (row, map) in rows.iter().zip(maps) {
        let now = hs.external_ids(&row.who).await;
        let state = if now == map.after {
            State::After
        } else if now == map.before {
            State::Before
        } else {
            State::Other(format!("{now:?}"))
        };
        chaos.judge(row, state, |line| match was_now(&line["message"]) {
            None => Some("no `was [..]; now [..]` in the message: it cannot be undone".into()),
            Some((was, now)) if was != map.before || now != map.after => Some(format!(
                "the message says was {was:?} now {now:?}; it was {:?} and is {:?}",
                map.before, map.after
            )),
            Some(_) => None,
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn set_external_id() {
    let hs = synapse("relaxed");
    let (seeds, defaults) = seeds(&[40, 41]);
    let mut problems = vec![];
    let mut coverage = Coverage::default();
    for seed in seeds {
        let tag = unique("cs");
        let mut rows = vec![];
        let mut maps = vec![];
        let mut accounts = vec![];
        let mut input = String::from("user,provider,external_id\n");
        for i in 0..ROWS {
            let id = format!("@{tag}-{i}:{}", hs.server_name);
            let new = format!("oidc-new:n-{tag}-{i}");
            let keep = format!("saml-keep:k-{tag}-{i}");
            let pre_done = i < PRE_DONE;
            let before = if pre_done {
                vec![new.clone(), keep.clone()]
            } else {
                match i % 3 {
                    0 => vec![format!("oidc-old:o-{tag}-{i}"), keep.clone()],
                    1 => vec![keep.clone()],
                    _ => vec![format!("oidc-new:stale-{tag}-{i}")],
                }
            };
            let after: Vec<String> = before
                .iter()
                .filter(|p| !p.starts_with("oidc-old:") && !p.starts_with("oidc-new:"))
                .cloned()
                .chain([new])
                .collect();
            accounts.push((id.clone(), json!({"external_ids": pairs(&before)})));
            input.push_str(&format!("{id},oidc-new,n-{tag}-{i}\n"));
            rows.push(Planned {
                id: id.clone(),
                who: id,
                pre_done,
            });
            maps.push(Mapping {
                before: sorted(before),
                after: sorted(after),
            });
        }
        create_all(&hs, accounts).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let mut chaos = chaos_run(
            &hs,
            "set-external-id",
            seed,
            vec![(tag.clone(), "~tag".into())],
            dir.path(),
            &["set-external-id", "in.csv", "--drop-provider", "oidc-old"],
            &rows,
        )
        .await;
        judge_mappings(&hs, &mut chaos, &rows, &maps).await;
        coverage.add(&chaos);
        problems.extend(chaos.finish());
    }
    coverage.check(defaults, &mut problems);
    verdict("set-external-id", problems);
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_external_id() {
    let hs = synapse("relaxed");
    let (seeds, defaults) = seeds(&[51, 52]);
    let mut problems = vec![];
    let mut coverage = Coverage::default();
    for seed in seeds {
        let tag = unique("cr");
        let provider = "oidc-gone";
        let mut rows = vec![];
        let mut maps = vec![];
        let mut accounts = vec![];
        let mut input = String::from("user,provider\n");
        for i in 0..ROWS {
            let id = format!("@{tag}-{i}:{}", hs.server_name);
            let keep = format!("saml-keep:k-{tag}-{i}");
            let pre_done = i < PRE_DONE;
            let before = match (pre_done, i % 4) {
                (true, _) => vec![keep.clone()],
                (false, 0) => vec![
                    format!("{provider}:a-{tag}-{i}"),
                    format!("{provider}:b-{tag}-{i}"),
                    keep.clone(),
                ],
                (false, 1) => vec![format!("{provider}:a-{tag}-{i}")],
                (false, _) => vec![format!("{provider}:a-{tag}-{i}"), keep.clone()],
            };
            let after: Vec<String> = before
                .iter()
                .filter(|p| !p.starts_with(&format!("{provider}:")))
                .cloned()
                .collect();
            accounts.push((id.clone(), json!({"external_ids": pairs(&before)})));
            input.push_str(&format!("{id},{provider}\n"));
            rows.push(Planned {
                id: id.clone(),
                who: id,
                pre_done,
            });
            maps.push(Mapping {
                before: sorted(before),
                after: sorted(after),
            });
        }
        create_all(&hs, accounts).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let mut chaos = chaos_run(
            &hs,
            "remove-external-id",
            seed,
            vec![(tag.clone(), "~tag".into())],
            dir.path(),
            &["remove-external-id", "in.csv", "--yes"],
            &rows,
        )
        .await;
        judge_mappings(&hs, &mut chaos, &rows, &maps).await;
        coverage.add(&chaos);
        problems.extend(chaos.finish());
    }
    coverage.check(defaults, &mut problems);
    verdict("remove-external-id", problems);
}

// ---------------------------------------------------------------------------------------------
// deactivate

#[tokio::test(flavor = "multi_thread")]
async fn deactivate_accounts() {
    let hs = synapse("relaxed");
    let (seeds, defaults) = seeds(&[61, 44]);
    let mut problems = vec![];
    let mut coverage = Coverage::default();
    for seed in seeds {
        let tag = unique("cd");
        let mut rows = vec![];
        let mut input = String::from("user\n");
        let ids: Vec<String> = (0..ROWS)
            .map(|i| format!("@{tag}-{i}:{}", hs.server_name))
            .collect();
        create_all(&hs, ids.iter().map(|id| (id.clone(), json!({}))).collect()).await;
        for (i, id) in ids.iter().enumerate() {
            let pre_done = i < PRE_DONE;
            if pre_done {
                deactivate(&hs, id).await;
            }
            input.push_str(&format!("{id}\n"));
            rows.push(Planned {
                id: id.clone(),
                who: id.clone(),
                pre_done,
            });
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "in.csv", &input);
        let mut chaos = chaos_run(
            &hs,
            "deactivate",
            seed,
            vec![(tag.clone(), "~tag".into())],
            dir.path(),
            &["deactivate", "in.csv", "--yes"],
            &rows,
        )
        .await;
        for row in &rows {
            let (status, account) = hs.user(&row.who).await;
            let state = match (status, account["deactivated"].as_bool()) {
                (200, Some(true)) => State::After,
                (200, Some(false)) => State::Before,
                _ => State::Other(format!("{status} {account}")),
            };
            chaos.judge(row, state, |_| None);
        }
        coverage.add(&chaos);
        problems.extend(chaos.finish());
    }
    coverage.check(defaults, &mut problems);
    verdict("deactivate", problems);
}
