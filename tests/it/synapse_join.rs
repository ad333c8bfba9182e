//! `synbatch join` against a real Synapse (tests/synapse/harness.py starts it on 127.0.0.1).
//! Every test makes its own users and rooms, so tests run in parallel without interfering.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::{self, Synapse, results, run_against, synapse, write};
use serde_json::json;

fn statuses(rows: &[HashMap<String, String>]) -> Vec<(String, String)> {
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| (r["key"].clone(), r["status"].clone()))
        .collect();
    out.sort();
    out
}

fn by_key<'a>(rows: &'a [HashMap<String, String>], key: &str) -> &'a HashMap<String, String> {
    rows.iter()
        .rev()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no line for {key} in {rows:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_public_and_private_rooms_by_alias_and_id_then_reruns_unchanged() {
    let hs = synapse("relaxed");
    let users = hs.users("pp", 4).await;
    let (pub_id, pub_alias) = hs.room("pub", true).await;
    let (priv_id, priv_alias) = hs.room("priv", false).await;
    let dir = tempfile::tempdir().unwrap();
    // A bare localpart, full ids, alias and id for each kind of room; `;` delimited with a BOM.
    let local0 = users[0].trim_start_matches('@').split(':').next().unwrap();
    let input = format!(
        "\u{feff}Matrix ID;Room Alias\r\n{local0};{pub_alias}\r\n{};{pub_id}\r\n{};{priv_alias}\r\n{};{priv_id}\r\n",
        users[1], users[2], users[3]
    );
    let file = write(dir.path(), "hires.csv", &input);

    let run = run_against(&hs, dir.path(), &["join", "hires.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("hires.results.csv"));
    assert_eq!(lines.len(), 4);
    for line in &lines {
        assert_eq!(line["status"], "ok", "{line:?}");
        assert_eq!(line["http_status"], "200");
        assert_eq!(line["attempts"], "1");
        assert!(line["finished_at"].ends_with('Z'));
    }
    assert_eq!(
        by_key(&lines, &format!("join {} {pub_alias}", users[0]))["row"],
        "1"
    );
    assert_eq!(
        by_key(&lines, &format!("join {} {priv_id}", users[3]))["row"],
        "4"
    );
    let pub_members = hs.members(&pub_id).await;
    let priv_members = hs.members(&priv_id).await;
    for (i, user) in users.iter().enumerate() {
        let room = if i < 2 { &pub_members } else { &priv_members };
        assert!(room.contains(user), "{user} not in room: {room:?}");
    }

    // A rerun changes nothing and says so, for public rooms (200 again) and private ones (403).
    let run = run_against(&hs, dir.path(), &["join", file.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("hires.results.csv"));
    assert_eq!(lines.len(), 8);
    assert!(
        lines[4..].iter().all(|l| l["status"] == "unchanged"),
        "{lines:?}"
    );
    assert_eq!(hs.members(&pub_id).await, pub_members);
    assert_eq!(hs.members(&priv_id).await, priv_members);

    // --resume sends nothing at all: every key is done.
    let run = run_against(&hs, dir.path(), &["join", "hires.csv", "--resume"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("4 skipped"), "{}", run.stderr);
    assert_eq!(results(&dir.path().join("hires.results.csv")).len(), 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_get_the_right_status_and_the_good_ones_still_run() {
    let hs = synapse("relaxed");
    let users = hs.users("bad", 1).await;
    let (room_id, alias) = hs.room("bad", true).await;
    let dir = tempfile::tempdir().unwrap();
    let missing_alias = format!("#no-such-room-{}:{}", common::unique("x"), hs.server_name);
    let ghost = format!("@{}:{}", common::unique("ghost"), hs.server_name);
    let input = [
        "user,room".to_string(),
        format!("{ghost},{alias}"),                // unknown user
        format!("{},{missing_alias}", users[0]),   // unknown alias
        format!("@someone:elsewhere.org,{alias}"), // remote user
        format!("{},general", users[0]),           // not a room
        format!(",{alias}"),                       // no user
        format!("@bob,{alias}"),                   // no server part
        format!("{},{alias}", users[0]),           // good
    ]
    .join("\n");
    write(dir.path(), "rows.csv", &input);
    let run = run_against(&hs, dir.path(), &["join", "rows.csv", "-o", "out.csv"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("out.csv"));
    assert_eq!(lines.len(), 7);
    let row = |n: &str| lines.iter().find(|l| l["row"] == n).unwrap();

    assert_eq!(row("1")["status"], "failed");
    assert_eq!(row("1")["http_status"], "404");
    assert_eq!(row("1")["errcode"], "M_NOT_FOUND");
    assert_eq!(row("2")["status"], "failed");
    assert_eq!(row("2")["errcode"], "M_NOT_FOUND");
    assert!(
        row("2")["message"].contains(&missing_alias),
        "{:?}",
        row("2")
    );
    assert_eq!(row("3")["status"], "invalid");
    assert!(row("3")["message"].contains("only takes local users"));
    assert_eq!(row("4")["status"], "invalid");
    assert!(row("4")["message"].contains("`general`"));
    assert_eq!(row("5")["status"], "invalid");
    assert!(row("5")["message"].contains("missing user"));
    assert_eq!(row("6")["status"], "invalid");
    assert!(row("6")["message"].contains("`@bob`"));
    assert_eq!(row("7")["status"], "ok");
    assert!(hs.members(&room_id).await.contains(&users[0]));
    // The summary points at what to do next.
    assert!(run.stderr.contains("--retry-failed"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn room_option_joins_every_user_to_every_room() {
    let hs = synapse("relaxed");
    let users = hs.users("cross", 3).await;
    let (a_id, a_alias) = hs.room("cross-a", true).await;
    let (b_id, _) = hs.room("cross-b", false).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "staff.csv",
        &format!("username\n{}\n", users.join("\n")),
    );
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "staff.csv", "--room", &a_alias, "--room", &b_id],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("staff.results.csv"));
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["status"] == "ok"));
    for user in &users {
        assert!(hs.members(&a_id).await.contains(user));
        assert!(hs.members(&b_id).await.contains(user));
        assert_eq!(by_key(&lines, &format!("join {user} {b_id}"))["room"], b_id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn interrupted_run_resumes_without_sending_a_done_row_twice() {
    let hs = synapse("relaxed");
    let users = hs.users("intr", 120).await;
    let (room_id, alias) = hs.room("intr", true).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "many.csv",
        &format!("user\n{}\n", users.join("\n")),
    );
    let results_path = dir.path().join("many.results.csv");

    let child = common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .args([
            "join",
            "many.csv",
            "--homeserver",
            &hs.url,
            "--room",
            &alias,
            "-j",
            "2",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once some rows are recorded (bounded wait). Pending lines do not count.
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = |t: String| t.lines().filter(|l| !l.contains(",pending,")).count();
    while std::fs::read_to_string(&results_path).map_or(0, finished) < 11 {
        assert!(Instant::now() < deadline, "no progress within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    let first = common::finish(output, Some(&hs.admin_token));
    assert_eq!(first.code, 130, "{}", first.stderr);
    assert!(first.stderr.contains("--resume"), "{}", first.stderr);
    let recorded = results(&results_path);
    assert!(
        recorded.len() >= 10 && recorded.len() < 120,
        "{} lines",
        recorded.len()
    );
    assert!(recorded.iter().all(|l| l["status"] == "ok"));

    let run = run_against(
        &hs,
        dir.path(),
        &["join", "many.csv", "--room", &alias, "--resume"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let all = results(&results_path);
    assert_eq!(all.len(), 120, "each row recorded once");
    let mut keys: Vec<_> = all.iter().map(|l| l["key"].clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 120, "no key sent twice");
    assert!(
        all.iter().all(|l| l["status"] == "ok"),
        "all joined by this run"
    );
    assert!(
        run.stderr.contains(&format!("{} skipped", recorded.len())),
        "{}",
        run.stderr
    );
    let members = hs.members(&room_id).await;
    assert!(users.iter().all(|u| members.contains(u)));
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_failed_reruns_only_the_failed_rows() {
    let hs = synapse("relaxed");
    let users = hs.users("retry", 2).await;
    let (room_id, alias) = hs.room("retry", true).await;
    let late = format!("@{}:{}", common::unique("late"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.jsonl",
        &format!(
            "{{\"user\": \"{}\", \"room\": \"{alias}\"}}\n{{\"user\": \"{late}\", \"room\": \"{alias}\"}}\n{{\"user\": \"{}\", \"room\": \"{alias}\"}}\n",
            users[0], users[1]
        ),
    );
    let run = run_against(&hs, dir.path(), &["join", "rows.jsonl"]);
    assert_eq!(run.code, 1);
    let path = dir.path().join("rows.results.csv");
    assert_eq!(
        statuses(&results(&path)),
        statuses(&[
            HashMap::from([
                ("key".into(), format!("join {} {alias}", users[0])),
                ("status".into(), "ok".into())
            ]),
            HashMap::from([
                ("key".into(), format!("join {late} {alias}")),
                ("status".into(), "failed".into())
            ]),
            HashMap::from([
                ("key".into(), format!("join {} {alias}", users[1])),
                ("status".into(), "ok".into())
            ]),
        ])
    );

    // The account appears; only its row runs again.
    hs.create_user(&late, json!({"password": "pw-Test-1"}))
        .await;
    let run = run_against(&hs, dir.path(), &["join", "rows.jsonl", "--retry-failed"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&path);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["key"], format!("join {late} {alias}"));
    assert_eq!(lines[3]["status"], "ok");
    assert_eq!(lines[3]["row"], "2");
    assert!(hs.members(&room_id).await.contains(&late));

    // Nothing is failed any more: a second --retry-failed runs nothing.
    let run = run_against(&hs, dir.path(), &["join", "rows.jsonl", "--retry-failed"]);
    assert_eq!(run.code, 0);
    assert_eq!(results(&path).len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_sends_nothing_and_writes_nothing() {
    let hs = synapse("relaxed");
    let users = hs.users("dry", 2).await;
    let (room_id, alias) = hs.room("dry", true).await;
    let before = hs.members(&room_id).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.json",
        &format!(
            r#"[{{"user": "{}", "room": "{alias}"}}, {{"user": "{}", "room": "{alias}"}}, {{"user": "x y", "room": "{alias}"}}]"#,
            users[0], users[1]
        ),
    );
    let run = run_against(&hs, dir.path(), &["join", "rows.json", "--dry-run"]);
    assert_eq!(
        run.code, 1,
        "an invalid row makes the plan fail: {}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains(&format!("row 1: POST /_synapse/admin/v1/join/{alias}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("row 3: invalid: user `x y` contains white space"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("2 requests, 1 invalid"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("rows.results.csv").exists());
    assert_eq!(hs.members(&room_id).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn email_addresses_resolve_to_their_accounts() {
    let hs = synapse("relaxed");
    let user = format!("@{}:{}", common::unique("mail"), hs.server_name);
    let address = format!("{}@example.org", common::unique("addr"));
    hs.create_user(
        &user,
        json!({"threepids": [{"medium": "email", "address": address}]}),
    )
    .await;
    let (room_id, alias) = hs.room("mail", true).await;
    let dir = tempfile::tempdir().unwrap();
    let unknown = format!("{}@example.org", common::unique("nobody"));
    write(
        dir.path(),
        "rows.csv",
        &format!(
            "email,room\n{},{alias}\n{unknown},{alias}\n",
            address.to_uppercase()
        ),
    );
    let run = run_against(&hs, dir.path(), &["join", "rows.csv"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    let found = lines.iter().find(|l| l["row"] == "1").unwrap();
    assert_eq!(found["status"], "ok", "{found:?}");
    assert_eq!(
        found["user"], address,
        "the key keeps the address, lowercased"
    );
    let missing = lines.iter().find(|l| l["row"] == "2").unwrap();
    assert_eq!(missing["status"], "failed");
    assert!(missing["message"].contains(&unknown), "{missing:?}");
    assert!(hs.members(&room_id).await.contains(&user));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_or_non_admin_token_aborts_before_any_row() {
    let hs = synapse("relaxed");
    let users = hs.users("tok", 1).await;
    let (_, alias) = hs.room("tok", true).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!("user,room\n{},{alias}\n", users[0]),
    );

    let bad = Synapse {
        admin_token: "syt_not_a_real_token".into(),
        ..hs.clone()
    };
    let run = run_against(&bad, dir.path(), &["join", "rows.csv"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("rejected the token"), "{}", run.stderr);
    assert!(!dir.path().join("rows.results.csv").exists());

    let plain = Synapse {
        admin_token: hs.user_token(&users[0]).await,
        ..hs.clone()
    };
    let run = run_against(&plain, dir.path(), &["join", "rows.csv"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not a server admin"), "{}", run.stderr);
    assert!(!dir.path().join("rows.results.csv").exists());

    // The token file works as well as the environment, and its token never shows.
    let token_file = write(dir.path(), "admin.token", &format!("{}\n", hs.admin_token));
    let output = common::synbatch()
        .current_dir(dir.path())
        .args(["join", "rows.csv", "--homeserver", &hs.url, "--token-file"])
        .arg(&token_file)
        .args(["-v"])
        .output()
        .unwrap();
    let run = common::finish(output, Some(&hs.admin_token));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(dir.path().join("rows.results.csv")).unwrap();
    assert!(!text.contains(&hs.admin_token));
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_input_with_column_mapping() {
    let hs = synapse("relaxed");
    let users = hs.users("stdin", 2).await;
    let (room_id, alias) = hs.room("stdin", true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .args([
            "join",
            "-",
            "--homeserver",
            &hs.url,
            "--column",
            "user=Account",
            "--room",
            &alias,
        ])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "Name\tAccount").unwrap();
    for (i, u) in users.iter().enumerate() {
        writeln!(stdin, "Person {i}\t{u}").unwrap();
    }
    drop(stdin);
    let run = common::finish(child.wait_with_output().unwrap(), Some(&hs.admin_token));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("join.results.csv"));
    assert_eq!(lines.len(), 2);
    let members = hs.members(&room_id).await;
    assert!(users.iter().all(|u| members.contains(u)));
}
