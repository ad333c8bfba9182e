//! `export-users`' columns against a real Synapse: times in RFC 3339 beside the list's
//! milliseconds, `locked`, `last_seen_at`, and emails (`--with-emails`, read per account: the
//! list does not carry them), with `--summary-json`.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::common::{Synapse, results, run_against, synapse, unique};
use crate::summary_json::{assert_valid, only_json};

const COLUMNS: [&str; 10] = [
    "user",
    "displayname",
    "admin",
    "deactivated",
    "locked",
    "user_type",
    "created_at",
    "creation_ts_ms",
    "last_seen_at",
    "last_seen_ts_ms",
];

/// The list's `last_seen_ts` of `user` once Synapse has recorded a request of theirs (it
/// writes client IPs in batches every few seconds); polled, at most 60 times.
async fn last_seen(hs: &Synapse, tag: &str, user: &str) -> i64 {
    for _ in 0..60 {
        let path = format!("/_synapse/admin/v2/users?name={tag}&limit=100");
        let (status, body) = hs.call("GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        let seen = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == user)
            .and_then(|u| u["last_seen_ts"].as_i64());
        if let Some(ms) = seen {
            return ms;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("Synapse never recorded {user} as seen");
}

fn header(path: &std::path::Path) -> Vec<String> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    reader.headers().unwrap().iter().map(String::from).collect()
}

fn at(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).unwrap_or_else(|e| panic!("{rfc3339}: {e}"));
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn export_has_rfc3339_times_locked_last_seen_and_emails() {
    let hs = synapse("relaxed");
    let tag = unique("xcol");
    let id = |n: &str| format!("@{tag}-{n}:{}", hs.server_name);
    let (mailed, plain, locked) = (id("mailed"), id("plain"), id("locked"));
    let (first, second) = (
        format!("{tag}.a@example.org"),
        format!("{tag}.b@example.org"),
    );
    let email = |a: &str| json!({"medium": "email", "address": a});
    hs.create_user(
        &mailed,
        json!({"password": "pw-Test-1", "threepids": [email(&first), email(&second)]}),
    )
    .await;
    hs.create_user(&plain, json!({"password": "pw-Test-1"}))
        .await;
    // Synapse takes `locked` only on an account that exists.
    hs.create_user(&locked, json!({"password": "pw-Test-1"}))
        .await;
    hs.create_user(&locked, json!({"locked": true})).await;
    // One request with the user's own token from a password login (an admin-issued token
    // acts as the admin's puppet, and Synapse does not record its requests as the user's).
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{}/_matrix/client/v3/login", hs.url))
        .json(&json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": mailed},
            "password": "pw-Test-1",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("login gives a token");
    let whoami = client
        .get(format!("{}/_matrix/client/v3/account/whoami", hs.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let seen_ms = last_seen(&hs, &tag, &mailed).await;

    let dir = tempfile::tempdir().unwrap();
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "export-users",
            "--name",
            &tag,
            "--with-emails",
            "-o",
            "users.csv",
            "--summary-json",
            "-",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = only_json(&run.stdout);
    assert_valid(&summary);
    assert_eq!(summary["job"], "export-users");
    assert_eq!(summary["counts"]["ok"], 3);
    assert_eq!(summary["results"], Value::Null);

    let path = dir.path().join("users.csv");
    let mut expected: Vec<&str> = COLUMNS.to_vec();
    expected.push("emails");
    assert_eq!(header(&path), expected);
    let rows = results(&path);
    let by_user: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["user"].as_str(), r)).collect();
    assert_eq!(by_user.len(), 3, "{rows:?}");
    let row = |u: &str| by_user[u];
    // Both addresses, in the order Synapse keeps them.
    let mut emails: Vec<&str> = row(&mailed)["emails"].split(';').collect();
    emails.sort();
    assert_eq!(emails, [first.as_str(), second.as_str()]);
    assert_eq!(row(&plain)["emails"], "");
    assert_eq!(row(&locked)["locked"], "true");
    assert_eq!(row(&plain)["locked"], "false");
    for user in [&mailed, &plain, &locked] {
        let r = row(user);
        let ms: i64 = r["creation_ts_ms"].parse().unwrap();
        assert_eq!(at(&r["created_at"]), ms, "{r:?}");
        assert!(r["created_at"].ends_with('Z'), "{r:?}");
    }
    let r = row(&mailed);
    assert_eq!(r["last_seen_ts_ms"], seen_ms.to_string());
    assert_eq!(at(&r["last_seen_at"]), seen_ms);
    assert!(seen_ms >= r["creation_ts_ms"].parse::<i64>().unwrap());
    // Never seen: empty, not 1970.
    assert_eq!(row(&plain)["last_seen_at"], "");
    assert_eq!(row(&plain)["last_seen_ts_ms"], "");

    // Without --with-emails there is no emails column (and no GET per account).
    let run = run_against(
        &hs,
        dir.path(),
        &["export-users", "--name", &tag, "-o", "plain.csv"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(header(&dir.path().join("plain.csv")), COLUMNS);

    // JSON Lines: emails as a list, times as strings or null.
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "export-users",
            "--name",
            &tag,
            "--with-emails",
            "--format",
            "jsonl",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |u: &str| lines.iter().find(|l| l["user"] == u).unwrap();
    assert_eq!(line(&mailed)["emails"].as_array().unwrap().len(), 2);
    assert_eq!(line(&plain)["emails"], json!([]));
    assert_eq!(line(&plain)["last_seen_at"], Value::Null);
    assert_eq!(line(&locked)["locked"], true);
    assert_eq!(
        at(line(&plain)["created_at"].as_str().unwrap()),
        line(&plain)["creation_ts_ms"].as_i64().unwrap()
    );

    // The export and the summary cannot share stdout.
    let run = run_against(&hs, dir.path(), &["export-users", "--summary-json", "-"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("-o FILE"), "{}", run.stderr);
}
