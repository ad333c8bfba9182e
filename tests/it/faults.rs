//! What a real Synapse cannot be made to do on demand, from a mock server on 127.0.0.1:
//! 429 storms, 503s, timeouts, a token that stops working mid-run, torn responses.

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{self, finish, results, synbatch, write};
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "syt_mock_token_do_not_print";

/// A mock homeserver whose token is an admin's, with empty rooms.
async fn homeserver() -> MockServer {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/members$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": [], "total": 0})))
        .mount(&server)
        .await;
    server
}

/// Answers join requests from a script of responses (the last one repeats), noting when each
/// request arrived.
#[derive(Clone)]
struct Script {
    responses: Arc<Vec<ResponseTemplate>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    fn new(responses: Vec<ResponseTemplate>) -> Self {
        Script {
            responses: Arc::new(responses),
            arrivals: Arc::default(),
        }
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(Instant::now());
        let at = (arrivals.len() - 1).min(self.responses.len() - 1);
        self.responses[at].clone()
    }
}

async fn mount_join(server: &MockServer, script: &Script) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
        .respond_with(script.clone())
        .mount(server)
        .await;
}

fn joined() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"room_id": "!room:mock.test"}))
}

fn limited() -> ResponseTemplate {
    ResponseTemplate::new(429)
        .set_body_json(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}))
}

fn input(dir: &std::path::Path, rows: usize) {
    let body: String = (0..rows)
        .map(|i| format!("@u{i}:mock.test,!room:mock.test\n"))
        .collect();
    write(dir, "rows.csv", &format!("user,room\n{body}"));
}

/// Runs synbatch on a blocking thread so the mock server keeps answering.
async fn run(url: String, dir: std::path::PathBuf, extra: &[&str]) -> common::Run {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = synbatch()
            .current_dir(&dir)
            .env("SYNBATCH_TOKEN", TOKEN)
            .args(["join", "rows.csv", "--homeserver", &url])
            .args(&extra)
            .output()
            .unwrap();
        finish(output, Some(TOKEN))
    })
    .await
    .unwrap()
}

/// After a 429, no join request may arrive until the pause is over, from any worker.
fn assert_quiet_after(arrivals: &[Instant], limited_at: usize, pause: Duration) {
    let start = arrivals[limited_at];
    let early: Vec<_> = arrivals[limited_at + 1..]
        .iter()
        .map(|t| t.duration_since(start))
        .filter(|d| *d < pause)
        .collect();
    assert!(early.is_empty(), "requests during the pause: {early:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_header_pauses_every_worker() {
    let server = homeserver().await;
    // Four workers start together. The first to arrive is told to wait a second; the other
    // three are answered slowly, so they are still in flight when the 429 is known and must
    // then wait out the pause before starting their next rows.
    let header_429 = limited().insert_header("Retry-After", "1");
    let slow = joined().set_delay(Duration::from_millis(200));
    let script = Script::new(vec![header_429, slow.clone(), slow.clone(), slow, joined()]);
    mount_join(&server, &script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 6);
    let run = run(server.uri(), dir.path().into(), &["-j", "4"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| l["status"] == "ok"));
    assert_eq!(lines.iter().filter(|l| l["attempts"] == "2").count(), 1);
    let arrivals = script.arrivals();
    assert_eq!(arrivals.len(), 7, "6 rows and one retry");
    let pause = Duration::from_secs(1);
    for later in &arrivals[4..] {
        let after = later.duration_since(arrivals[0]);
        assert!(
            after >= pause,
            "a request {after:?} after the 429, inside the pause"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_ms_in_the_body_is_honoured_too() {
    let server = homeserver().await;
    let body_429 = ResponseTemplate::new(429).set_body_json(json!({
        "errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 1200
    }));
    let script = Script::new(vec![body_429, joined()]);
    mount_join(&server, &script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 3);
    let run = run(server.uri(), dir.path().into(), &["-j", "1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let arrivals = script.arrivals();
    assert_eq!(arrivals.len(), 4);
    // One worker: nothing else was in flight, so the pause is clean from the first instant.
    assert_quiet_after(&arrivals, 0, Duration::from_millis(1200));
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines[0]["attempts"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn service_unavailable_is_retried() {
    let server = homeserver().await;
    let script = Script::new(vec![
        ResponseTemplate::new(503),
        ResponseTemplate::new(503),
        joined(),
    ]);
    mount_join(&server, &script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 1);
    let run = run(server.uri(), dir.path().into(), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[0]["attempts"], "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_are_retried_then_failed_with_the_attempt_count() {
    let server = homeserver().await;
    let slow = joined().set_delay(Duration::from_secs(5));
    let script = Script::new(vec![slow]);
    mount_join(&server, &script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 1);
    let run = run(
        server.uri(),
        dir.path().into(),
        &["--timeout", "0.3", "--retries", "2"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines[0]["status"], "failed");
    assert_eq!(lines[0]["attempts"], "3");
    assert!(
        lines[0]["message"].contains("no answer within"),
        "{:?}",
        lines[0]
    );
    assert_eq!(script.arrivals().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_rejected_mid_run_aborts_without_marking_rows_failed() {
    let server = homeserver().await;
    let revoked = ResponseTemplate::new(401).set_body_json(
        json!({"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}),
    );
    let script = Script::new(vec![joined(), joined(), revoked]);
    mount_join(&server, &script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 500);
    let run = run(server.uri(), dir.path().into(), &["-j", "2"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("rejected the token"), "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
    assert!(
        lines.len() >= 2 && lines.len() < 10,
        "{} lines",
        lines.len()
    );
    assert!(script.arrivals().len() < 20, "the run must stop at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_aborts_with_exit_3() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 3);
    let run = run(format!("http://127.0.0.1:{port}"), dir.path().into(), &[]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("cannot reach the homeserver"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("rows.results.csv").exists());
}

/// A response cut off mid-body is a passing failure: the row is retried and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn torn_response_is_retried() {
    // wiremock cannot tear a response, so a raw socket server plays the whole homeserver.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let joins = Arc::new(Mutex::new(0u32));
    let seen = joins.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || raw_homeserver(&mut stream, &seen));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 1);
    let run = run(url, dir.path().into(), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines[0]["status"], "ok");
    assert_eq!(lines[0]["attempts"], "2");
    assert_eq!(*joins.lock().unwrap(), 2);
}

/// Serves requests on one connection until it closes; the first join's answer is torn.
fn raw_homeserver(stream: &mut std::net::TcpStream, joins: &Mutex<u32>) {
    common::serve_raw(stream, |stream, _| {
        let mut n = joins.lock().unwrap();
        *n += 1;
        if *n == 1 {
            // Promise 100 bytes, send 10, hang up.
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"room_id\"");
            return common::Raw::Hangup;
        }
        common::Raw::Body(r#"{"room_id":"!room:mock.test"}"#)
    });
}

/// Synapse down behind its reverse proxy: every join answers 502. The whole run pauses and then
/// stops (exit 3) instead of each row burning its own retries into `failed`.
#[tokio::test(flavor = "multi_thread")]
async fn an_outage_stops_the_run_instead_of_failing_every_row() {
    let server = homeserver().await;
    let script = Script::new(vec![ResponseTemplate::new(502)]);
    mount_join(&server, &script).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 20);
    let run = run(
        server.uri(),
        dir.path().into(),
        &["-j", "4", "--retries", "2"],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("stays unavailable"), "{}", run.stderr);
    assert!(run.stderr.contains("--resume"), "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert!(
        lines.iter().all(|l| l["status"] != "failed"),
        "no row is failed by an outage: {lines:?}"
    );
    // Row by row, 20 rows x 3 attempts; paused together, a few rows' worth at most.
    let sent = script.arrivals().len();
    assert!(sent < 20, "{sent} join requests during the outage");
}

/// One 502 while synbatch asks who the token belongs to is no reason to stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_502_at_startup_is_retried() {
    let server = homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_matrix/client/v3/account/whoami$"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_join(&server, &Script::new(vec![joined()])).await;
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 2);
    let run = run(server.uri(), dir.path().into(), &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let whoamis = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().ends_with("/whoami"))
        .count();
    assert_eq!(whoamis, 2, "asked again after the 502");
}
