//! How work is spread and capped, against mock servers that record what a real Synapse cannot
//! show on demand (the order of requests, how many are in flight):
//! - a room-sorted file runs with every room in flight at once (Synapse serialises membership
//!   changes per room), and every row still ends with its own line;
//! - `deactivate` runs 2 at a time unless `-j` says more, which it warns about;
//! - repeated 429s on a job that acts as the token's user print one hint naming
//!   `--lift-ratelimit`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::{self, finish, results, synbatch, write};
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const ROOMS: [&str; 3] = ["!aaa:mock.test", "!bbb:mock.test", "!ccc:mock.test"];

#[tokio::test(flavor = "multi_thread")]
async fn a_room_sorted_file_is_interleaved_and_every_row_recorded() {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/members$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": [], "total": 0})))
        .mount(&server)
        .await;
    // Slow enough that several joins are in flight together.
    Mock::given(method("POST"))
        .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"room_id": "!x:mock.test"}))
                .set_delay(Duration::from_millis(30)),
        )
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let per_room = 30;
    let mut body = String::from("user,room\n");
    for room in ROOMS {
        for i in 0..per_room {
            body.push_str(&format!("@u{i}:mock.test,{room}\n"));
        }
    }
    write(dir.path(), "sorted.csv", &body);
    let url = server.uri();
    let path = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        let output = synbatch()
            .current_dir(&path)
            .env("SYNBATCH_TOKEN", "mock-token")
            .args(["join", "sorted.csv", "--homeserver", &url, "-j", "6"])
            .output()
            .unwrap();
        finish(output, Some("mock-token"))
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);

    let joins: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| crate::chaos_proxy::percent_decode(r.url.path()))
        .map(|p| p.trim_start_matches("/_synapse/admin/v1/join/").to_string())
        .collect();
    assert_eq!(joins.len(), 3 * per_room, "{joins:?}");
    // In file order the rooms would change twice, and the last room would start 61st.
    let changes = joins.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes > 30, "rooms changed {changes} times: {joins:?}");
    // No room runs alone for long: in file order 30 joins in a row go to one room. The rows
    // the executor can see at the very start depend on how soon the reader thread gets the CPU
    // (8 of one room were seen on a loaded machine at -j 6), so the bound is twice -j.
    let longest = joins
        .chunk_by(|a, b| a == b)
        .map(<[String]>::len)
        .max()
        .unwrap();
    assert!(
        longest <= 12,
        "{longest} joins in a row to one room: {joins:?}"
    );

    // Whatever order they finished in, each row has its own final line, with its own fields.
    let lines = results(&dir.path().join("sorted.results.csv"));
    assert_eq!(lines.len(), 3 * per_room);
    let mut by_row: HashMap<usize, (String, String)> = HashMap::new();
    for line in &lines {
        assert_eq!(line["status"], "ok", "{line:?}");
        let row: usize = line["row"].parse().unwrap();
        by_row.insert(row, (line["user"].clone(), line["room"].clone()));
    }
    for (n, room) in ROOMS.iter().enumerate() {
        for i in 0..per_room {
            let row = 1 + n * per_room + i;
            let want = (format!("@u{i}:mock.test"), room.to_string());
            assert_eq!(by_row.get(&row), Some(&want), "row {row}");
        }
    }
}

/// Deactivations in flight at a raw-socket homeserver: the most at once, and how many ran.
#[derive(Clone, Default)]
struct Deactivations {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    done: Arc<AtomicUsize>,
}

/// A homeserver whose accounts are all active and whose deactivations take 150 ms each.
fn deactivation_server(seen: Deactivations) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (Ok(mut stream), seen) = (stream, seen.clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                common::serve_raw(&mut stream, |_, head| {
                    let target = head.split(' ').nth(1).unwrap_or_default();
                    if head.starts_with("POST ") && target.contains("/deactivate/") {
                        let now = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                        seen.most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(150));
                        seen.now.fetch_sub(1, Ordering::SeqCst);
                        seen.done.fetch_add(1, Ordering::SeqCst);
                        return common::Raw::Body("{}");
                    }
                    let user = target
                        .strip_prefix("/_synapse/admin/v2/users/")
                        .map(crate::chaos_proxy::percent_decode)
                        .unwrap_or_default();
                    let account = json!({
                        "name": user, "deactivated": false, "threepids": [], "external_ids": []
                    });
                    // A few short strings per test, for the life of the test binary.
                    common::Raw::Body(Box::leak(account.to_string().into_boxed_str()))
                });
            });
        }
    });
    url
}

fn deactivate(url: &str, dir: &std::path::Path, extra: &[&str]) -> common::Run {
    let output = synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", "mock-token")
        .args(["deactivate", "leavers.csv", "--yes", "--homeserver", url])
        .args(extra)
        .output()
        .unwrap();
    finish(output, Some("mock-token"))
}

#[test]
fn deactivate_runs_two_at_a_time_unless_told_and_warns_when_told() {
    let dir = tempfile::tempdir().unwrap();
    let users: String = (0..8).map(|i| format!("@leaver{i}:mock.test\n")).collect();
    write(dir.path(), "leavers.csv", &format!("user\n{users}"));

    let seen = Deactivations::default();
    let url = deactivation_server(seen.clone());
    let run = deactivate(&url, dir.path(), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    assert_eq!(seen.done.load(Ordering::SeqCst), 8);
    assert_eq!(
        seen.most.load(Ordering::SeqCst),
        2,
        "at most 2, and both used"
    );

    let seen = Deactivations::default();
    let url = deactivation_server(seen.clone());
    let run = deactivate(&url, dir.path(), &["-j", "4", "-o", "again.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: -j 4") && run.stderr.contains("default of 2"),
        "{}",
        run.stderr
    );
    assert_eq!(seen.done.load(Ordering::SeqCst), 8);
    let most = seen.most.load(Ordering::SeqCst);
    assert!(
        (3..=4).contains(&most),
        "-j 4 raised the cap: {most} at once"
    );
}

/// Answers the first `limited` requests with 429 (a short wait), then 200.
struct LimitedThenOk {
    limited: usize,
    seen: AtomicUsize,
}

impl Respond for LimitedThenOk {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.seen.fetch_add(1, Ordering::SeqCst) < self.limited {
            ResponseTemplate::new(429).set_body_json(
                json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 10}),
            )
        } else {
            ResponseTemplate::new(200).set_body_json(json!({}))
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_429s_on_invites_print_one_hint_naming_the_flag() {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/state$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/_matrix/client/v3/rooms/[^/]+/invite$"))
        .respond_with(LimitedThenOk {
            limited: 8,
            seen: AtomicUsize::new(0),
        })
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..4)
        .map(|i| format!("@u{i}:mock.test,!r:mock.test\n"))
        .collect();
    write(dir.path(), "invite.csv", &format!("user,room\n{rows}"));
    let (url, path) = (server.uri(), dir.path().to_path_buf());
    let run = tokio::task::spawn_blocking(move || {
        let output = synbatch()
            .current_dir(&path)
            .env("SYNBATCH_TOKEN", "mock-token")
            .args(["invite", "invite.csv", "--homeserver", &url])
            .output()
            .unwrap();
        finish(output, Some("mock-token"))
    })
    .await
    .unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("--lift-ratelimit").count(),
        1,
        "one hint: {}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}
