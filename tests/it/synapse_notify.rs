//! `notify` against the real Synapse (server notices on in the harness): 20 users, a run
//! killed half-way, resumed, then rerun: each user has exactly one notice, with their name.
//! And a server without notices stops the run before its first row (a mock: the harness turns
//! notices on for every profile).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, Synapse, enc, results, run_against, synapse, write};

/// The bodies of the notices in `user`'s notices room(s): rooms the user is invited to or in,
/// created by the notices user.
async fn notices_of(hs: &Synapse, user: &str) -> Vec<String> {
    let notices_user = format!("@notices:{}", hs.server_name);
    let path = format!("/_synapse/admin/v1/users/{}/memberships", enc(user));
    let (status, body) = hs.call("GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    let mut bodies = vec![];
    for (room_id, membership) in body["memberships"].as_object().unwrap() {
        if !matches!(membership.as_str(), Some("invite" | "join")) {
            continue;
        }
        let (_, room) = hs
            .call(
                "GET",
                &format!("/_synapse/admin/v1/rooms/{}", enc(room_id)),
                None,
            )
            .await;
        if room["creator"] != json!(notices_user) {
            continue;
        }
        let mut from: Option<String> = None;
        for _ in 0..20 {
            let mut path = format!(
                "/_synapse/admin/v1/rooms/{}/messages?dir=b&limit=50",
                enc(room_id)
            );
            if let Some(from) = &from {
                path.push_str(&format!("&from={}", enc(from)));
            }
            let (status, page) = hs.call("GET", &path, None).await;
            assert_eq!(status, 200, "{page}");
            let chunk = page["chunk"].as_array().unwrap();
            for event in chunk {
                if event["type"] == "m.room.message" {
                    bodies.push(event["content"]["body"].as_str().unwrap().to_string());
                }
            }
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_string()),
                _ => break,
            }
        }
    }
    bodies
}

fn ok_lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().filter(|l| l.contains(",ok,")).count())
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_users_killed_resumed_and_rerun_get_one_notice_each() {
    let hs = synapse("relaxed");
    let users = hs.users("notify", 20).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sheet = String::from("user,Display Name\n");
    for (i, user) in users.iter().enumerate() {
        sheet.push_str(&format!("{user},Person Number {i}\n"));
    }
    write(dir.path(), "staff.csv", &sheet);
    let results_path = dir.path().join("staff.results.csv");
    let message = "Welcome {displayname}, your rooms are ready";

    // Killed half-way: one row at a time, stopped once ten are recorded.
    let mut child = common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .args([
            "notify",
            "--homeserver",
            &hs.url,
            "staff.csv",
            "-j",
            "1",
            "--message",
            message,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while ok_lines(&results_path) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let done = ok_lines(&results_path);
    assert!(
        (10..20).contains(&done),
        "killed half-way: {done} rows done"
    );

    let run = run_against(
        &hs,
        dir.path(),
        &["notify", "staff.csv", "--message", message, "--resume"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after_resume = results(&results_path);
    let keys: std::collections::HashSet<_> =
        after_resume.iter().map(|l| l["key"].clone()).collect();
    assert_eq!(keys.len(), 20, "every row recorded: {after_resume:?}");

    // A rerun from scratch (not --resume) finds every notice and sends none.
    let run = run_against(
        &hs,
        dir.path(),
        &["notify", "staff.csv", "--message", message],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rerun = &results(&results_path)[after_resume.len()..];
    assert_eq!(rerun.len(), 20, "{rerun:?}");
    assert!(
        rerun.iter().all(|l| l["status"] == "unchanged"),
        "{rerun:?}"
    );

    for (i, user) in users.iter().enumerate() {
        let notices = notices_of(&hs, user).await;
        assert_eq!(
            notices,
            vec![format!("Welcome Person Number {i}, your rooms are ready")],
            "{user}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_without_the_named_column_is_invalid_and_nothing_blank_is_sent() {
    let hs = synapse("relaxed");
    let users = hs.users("notify-bad", 2).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "staff.csv",
        &format!("user,displayname\n{},Ann\n{},\n", users[0], users[1]),
    );
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "notify",
            "staff.csv",
            "--message",
            "Hi {displayname} of {team}",
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("staff.results.csv"));
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line["status"], "invalid", "{line:?}");
    }
    assert!(lines[0]["message"].contains("{team}"), "{:?}", lines[0]);
    assert!(
        lines[1]["message"].contains("{displayname}"),
        "{:?}",
        lines[1]
    );
    for user in &users {
        assert!(notices_of(&hs, user).await.is_empty(), "{user}");
    }
    // The per-row message column: its own template, over the same row.
    write(
        dir.path(),
        "own.csv",
        &format!(
            "user,message,team\n{},Hello {{team}} member,Ops\n",
            users[0]
        ),
    );
    let run = run_against(&hs, dir.path(), &["notify", "own.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        notices_of(&hs, &users[0]).await,
        vec!["Hello Ops member".to_string()]
    );
}

#[tokio::test]
async fn a_server_without_notices_stops_the_run_before_the_first_row() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, ResponseTemplate};
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("POST"))
        .and(path("/_synapse/admin/v1/send_server_notice"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"errcode": "M_UNKNOWN", "error": "Server notices are not enabled on this server"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "staff.csv", "user\n@a:mock.test\n");
    let url = server.uri();
    let dir_path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let output = common::synbatch()
            .current_dir(&dir_path)
            .env("SYNBATCH_TOKEN", "mock-admin-token")
            .args([
                "notify",
                "staff.csv",
                "--homeserver",
                &url,
                "--message",
                "hi",
            ])
            .output()
            .unwrap();
        common::finish(output, Some("mock-admin-token"))
    })
    .await
    .unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("server_notices"), "{}", run.stderr);
    assert!(!dir.path().join("staff.results.csv").exists(), "no row ran");
    let sent: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().contains("send_server_notice/"))
        .map(|r| json!(r.url.path()))
        .collect();
    assert!(sent.is_empty(), "{sent:?}");
}
