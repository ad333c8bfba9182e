//! `create-users` and the account list, from a mock server on 127.0.0.1: which requests it
//! sends (one list, then a PUT per new account and nothing per existing one), what it does on a
//! server too big to list, and an account made by someone else between the list and the PUT —
//! a race a real Synapse cannot be made to lose on demand. (The real server's side — that the
//! list shows deactivated and locked accounts — is in synapse_onboarding.rs.)

use crate::common::{self, finish, results, synbatch, write};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "syt_mock_token_do_not_print";

/// A mock homeserver whose token is an admin's, listing `listed` accounts out of `total`.
async fn homeserver(listed: &[&str], total: u64) -> MockServer {
    let server = common::mock_admin_homeserver().await;
    let users: Vec<Value> = listed.iter().map(|n| json!({"name": n})).collect();
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v2/users"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"users": users, "total": total})),
        )
        .mount(&server)
        .await;
    server
}

async fn mount_put(server: &MockServer, user: &str, status: u16) {
    Mock::given(method("PUT"))
        .and(path(format!("/_synapse/admin/v2/users/{user}")))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"name": user})))
        .mount(server)
        .await;
}

async fn create_users(server: &MockServer, rows: &str) -> (common::Run, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hires.csv", rows);
    let (url, cwd) = (server.uri(), dir.path().to_path_buf());
    let run = tokio::task::spawn_blocking(move || {
        let output = synbatch()
            .current_dir(&cwd)
            .env("SYNBATCH_TOKEN", TOKEN)
            .args(["create-users", "hires.csv", "--homeserver", &url])
            .output()
            .unwrap();
        finish(output, Some(TOKEN))
    })
    .await
    .unwrap();
    (run, dir)
}

/// The requests the server got, as "METHOD /path?query", leaving out the run's own setup.
async fn requests(server: &MockServer) -> Vec<(String, Option<Value>)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().starts_with("/_synapse/admin/v2/"))
        .map(|r| {
            let line = match r.url.query() {
                Some(q) => format!("{} {}?{q}", r.method, r.url.path()),
                None => format!("{} {}", r.method, r.url.path()),
            };
            (line, serde_json::from_slice(&r.body).ok())
        })
        .collect()
}

#[tokio::test]
async fn one_list_then_a_put_per_new_account_and_nothing_for_existing_ones() {
    let server = homeserver(&["@old:mock.test", "@admin:mock.test"], 2).await;
    mount_put(&server, "@new1:mock.test", 201).await;
    mount_put(&server, "@new2:mock.test", 201).await;
    let (run, dir) = create_users(
        &server,
        "user,displayname,password\nold,Old,Pw-old-1234\nnew1,New One,Pw-new-1234\nnew2,,\nnew1,Again,\n",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let sent = requests(&server).await;
    let lines: Vec<&str> = sent.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("GET")).count(),
        1,
        "one list and no GET per row: {lines:?}"
    );
    let list = lines[0];
    for flag in ["deactivated=true", "guests=true", "locked=true"] {
        assert!(list.contains(flag), "the list asks for {flag}: {list}");
    }
    let mut puts: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("PUT"))
        .copied()
        .collect();
    puts.sort();
    assert_eq!(
        puts,
        [
            "PUT /_synapse/admin/v2/users/@new1:mock.test",
            "PUT /_synapse/admin/v2/users/@new2:mock.test"
        ],
        "nothing is sent for the listed account, nor for the second row of an account this run made"
    );
    let body = sent
        .iter()
        .find(|(l, _)| l.ends_with("@new1:mock.test"))
        .and_then(|(_, b)| b.clone())
        .unwrap();
    assert_eq!(body["logout_devices"], json!(false), "{body}");
    assert_eq!(body["displayname"], json!("New One"), "{body}");

    let lines = results(&dir.path().join("hires.results.csv"));
    let status = |row: &str| {
        let line = lines.iter().find(|l| l["row"] == row).unwrap();
        (line["status"].clone(), line["http_status"].clone())
    };
    assert_eq!(status("1"), ("unchanged".into(), "".into()));
    assert_eq!(status("3"), ("ok".into(), "201".into()));
    // Rows 2 and 4 name one account: whichever runs first makes it, the other finds it.
    let mut same = [status("2"), status("4")];
    same.sort();
    assert_eq!(
        same,
        [("ok".into(), "201".into()), ("unchanged".into(), "".into())]
    );
}

#[tokio::test]
async fn an_account_made_after_the_list_is_reported_not_taken_for_created() {
    let server = homeserver(&[], 0).await;
    mount_put(&server, "@raced:mock.test", 200).await;
    let (run, dir) = create_users(
        &server,
        "user,displayname,password\nraced,Raced,Pw-raced-1234\n",
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = &results(&dir.path().join("hires.results.csv"))[0];
    assert_eq!(line["status"], "failed", "{line:?}");
    assert_eq!(line["http_status"], "200", "{line:?}");
    let message = &line["message"];
    assert!(message.contains("made by someone else"), "{message}");
    assert!(
        message.contains("its password (its devices stay logged in)")
            && message.contains("its display name"),
        "says what was written over it: {message}"
    );
    assert!(!message.contains("Pw-raced"), "{message}");
}

#[tokio::test]
async fn a_server_too_big_to_list_is_asked_row_by_row() {
    let server = homeserver(&["@a:mock.test"], 10_001).await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v2/users/@.+$"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"errcode": "M_NOT_FOUND", "error": "User not found"})),
        )
        .mount(&server)
        .await;
    mount_put(&server, "@b:mock.test", 201).await;
    mount_put(&server, "@c:mock.test", 201).await;
    let (run, _dir) = create_users(&server, "user\nb\nc\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sent = requests(&server).await;
    let lists = sent
        .iter()
        .filter(|(l, _)| l.starts_with("GET /_synapse/admin/v2/users?"))
        .count();
    assert_eq!(
        lists, 1,
        "the list is given up after its first page: {sent:?}"
    );
    for user in ["@b:mock.test", "@c:mock.test"] {
        let get = format!("GET /_synapse/admin/v2/users/{user}");
        let put = format!("PUT /_synapse/admin/v2/users/{user}");
        let at = |want: &str| sent.iter().position(|(l, _)| l == want);
        assert!(
            at(&get).is_some() && at(&get) < at(&put),
            "a GET before the PUT: {sent:?}"
        );
    }
}
