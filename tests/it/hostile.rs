//! A hostile or broken server, from mock servers on 127.0.0.1: redirects to another origin, a
//! body without end, a Retry-After no clock can hold, a server that echoes the token, a URL
//! with a password in it, and an account answered without the lists a job writes back.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, finish, results, synbatch, write};
use serde_json::{Value, json};
use wiremock::matchers::{any, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Long enough to be taken out of answers' data too (homeserver::DATA_REDACT_MIN).
const TOKEN: &str = "syt_aG9zdGlsZQ_Zx8Kq3TmW9vLpR2sNf4y_1c9e7b";

/// What a bounded run of synbatch left behind, and the highest peak RSS seen while it ran.
struct Bounded {
    run: common::Run,
    peak_rss_kib: u64,
}

/// Runs synbatch in `dir` with the token in the environment, for at most `limit` (then kills it
/// and fails the test), sampling its peak RSS (`VmHWM`) as it runs.
fn run_bounded(dir: &Path, args: &[String], limit: Duration) -> Bounded {
    let mut child = synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", TOKEN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synbatch");
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(child.id()).unwrap_or(0));
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("synbatch {args:?} was still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    Bounded {
        run: finish(output, Some(TOKEN)),
        peak_rss_kib,
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    let mut pipe = pipe.unwrap();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        all
    })
}

/// The process's peak resident set so far, in KiB (`None` once it has exited).
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `run_bounded` off the async runtime, so that mock servers keep answering.
async fn run(dir: &Path, args: &[&str]) -> common::Run {
    run_peak(dir, args).await.run
}

async fn run_peak(dir: &Path, args: &[&str]) -> Bounded {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || run_bounded(&dir, &args, Duration::from_secs(60)))
        .await
        .unwrap()
}

fn join_input(dir: &Path) {
    write(
        dir,
        "rows.csv",
        "user,room\n@u1:mock.test,!room:mock.test\n",
    );
}

fn results_text(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Answers every request with a redirect to the same path on `to`.
struct RedirectTo {
    to: String,
    status: u16,
}

impl Respond for RedirectTo {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let target = format!("{}{}", self.to, request.url.path());
        ResponseTemplate::new(self.status).insert_header("Location", target.as_str())
    }
}

/// The token's user is an admin, says the other server: a client that followed the redirect
/// would pass its checks on that answer.
async fn other_origin() -> MockServer {
    common::mock_admin_homeserver().await
}

async fn requests(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_at_the_first_call_stops_the_run_and_reaches_nothing() {
    let other = other_origin().await;
    for status in [307, 308, 301, 302] {
        let server = MockServer::start().await;
        Mock::given(any())
            .respond_with(RedirectTo {
                to: other.uri(),
                status,
            })
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        join_input(dir.path());
        let run = run(
            dir.path(),
            &["join", "rows.csv", "--homeserver", &server.uri()],
        )
        .await;
        assert_eq!(run.code, 3, "{status}: {}", run.stderr);
        assert!(
            run.stderr.contains("follows no redirects")
                && run.stderr.contains(&other.uri())
                && run.stderr.contains("--homeserver"),
            "{status}: {}",
            run.stderr
        );
        assert_eq!(requests(&server).await.len(), 1, "whoami only, not retried");
        assert!(!dir.path().join("rows.results.csv").exists());
    }
    assert_eq!(requests(&other).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirected_put_never_carries_the_password_elsewhere() {
    let other = other_origin().await;
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v2/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"users": [], "total": 0})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/_synapse/admin/v2/users/@.+$"))
        .respond_with(RedirectTo {
            to: other.uri(),
            status: 307,
        })
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hires.csv",
        "user,password\nnew1,Pw-Redirected-1234\n",
    );
    let run = run(
        dir.path(),
        &["create-users", "hires.csv", "--homeserver", &server.uri()],
    )
    .await;
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        requests(&server)
            .await
            .contains(&"PUT /_synapse/admin/v2/users/@new1:mock.test".to_string()),
        "the PUT was sent, and redirected"
    );
    assert_eq!(requests(&other).await, Vec::<String>::new());
    // Said in the row (a failure) or on stderr (an abort), naming where it pointed.
    let recorded = results_text(dir.path(), "hires.results.csv");
    let said = format!("{recorded}\n{}", run.stderr);
    assert!(
        said.contains("follows no redirects") && said.contains(&other.uri()),
        "{said}"
    );
    assert!(!said.contains("Pw-Redirected"), "{said}");
}

/// Writes a whole answer, head and body, to a request.
type Answer = fn(&mut TcpStream);

/// A homeserver on a raw socket: whoami and the admin check answer; a join is answered by
/// `join`, which writes whatever it likes.
fn raw_homeserver(join: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(50) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || serve(&mut stream, join));
        }
    });
    url
}

fn serve(stream: &mut TcpStream, join: Answer) {
    common::serve_raw(stream, |stream, _| {
        join(stream);
        common::Raw::Hangup
    });
}

/// Writes `block` until the reader hangs up (or 3 GB, which no test should ever reach).
fn stream_forever(stream: &mut TcpStream, block: &[u8]) {
    let mut sent = 0usize;
    while sent < 3_000_000_000 && stream.write_all(block).is_ok() {
        sent += block.len();
    }
}

/// 200 announcing 2 GB of body, then streaming zeros.
fn huge_announced(stream: &mut TcpStream) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n";
    if stream.write_all(head.as_bytes()).is_ok() {
        stream_forever(stream, &[0u8; 64 * 1024]);
    }
}

/// 200 with a chunked body of zeros that never ends: no length to refuse it by.
fn endless_chunked(stream: &mut TcpStream) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunk = b"10000\r\n".to_vec();
    chunk.extend_from_slice(&[0u8; 0x10000]);
    chunk.extend_from_slice(b"\r\n");
    if stream.write_all(head.as_bytes()).is_ok() {
        stream_forever(stream, &chunk);
    }
}

/// An error status with an endless body: its start is enough to say what went wrong.
fn endless_error(stream: &mut TcpStream) {
    let head = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut chunk = b"10000\r\n".to_vec();
    chunk.extend_from_slice(&b"oops ".repeat(0x10000 / 5 + 1)[..0x10000]);
    chunk.extend_from_slice(b"\r\n");
    if stream.write_all(head.as_bytes()).is_ok() {
        stream_forever(stream, &chunk);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_body_is_cut_at_the_limit_not_read_into_memory() {
    let cases: [(&str, Answer); 3] = [
        ("announced", huge_announced),
        ("chunked", endless_chunked),
        ("error", endless_error),
    ];
    for (case, join) in cases {
        let url = raw_homeserver(join);
        let dir = tempfile::tempdir().unwrap();
        join_input(dir.path());
        let bounded = run_peak(
            dir.path(),
            &["join", "rows.csv", "--homeserver", &url, "--retries", "0"],
        )
        .await;
        let run = &bounded.run;
        assert_eq!(run.code, 1, "{case}: {}", run.stderr);
        let lines = results(&dir.path().join("rows.results.csv"));
        assert_eq!(lines[0]["status"], "failed", "{case}: {lines:?}");
        let message = &lines[0]["message"];
        if case == "error" {
            assert_eq!(lines[0]["http_status"], "500", "{lines:?}");
            assert!(message.starts_with("oops oops"), "{message}");
            assert!(message.len() < 300, "{case}: {} bytes", message.len());
        } else {
            assert!(
                message.contains("4 MiB") && message.contains("MAX_BODY"),
                "{case}: {message}"
            );
        }
        assert!(bounded.peak_rss_kib > 0, "{case}: RSS never sampled");
        assert!(
            bounded.peak_rss_kib < 100 * 1024,
            "{case}: peak RSS {} KiB",
            bounded.peak_rss_kib
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_beyond_any_clock_does_not_panic() {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/members$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": []})))
        .mount(&server)
        .await;
    // (Every other form is in the unit tests of homeserver: these two panicked here before.)
    for wait in ["1e19", "18446744073709551616"] {
        let limited = ResponseTemplate::new(429)
            .insert_header("Retry-After", wait)
            .set_body_json(json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests"}));
        let guard = Mock::given(method("POST"))
            .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
            .respond_with(limited)
            .mount_as_scoped(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        join_input(dir.path());
        let uri = server.uri();
        let dir_path = dir.path().to_path_buf();
        let run = tokio::task::spawn_blocking(move || interrupt_after(&dir_path, &uri)).await;
        let run = run.unwrap();
        assert!(!run.stderr.contains("panicked"), "{wait}: {}", run.stderr);
        // Waiting (and interrupted: 130), or stopped because the wait is past MAX_WAIT (3).
        assert!(
            run.code == 130 || run.code == 3,
            "{wait}: exit {}: {}",
            run.code,
            run.stderr
        );
        assert!(!guard.received_requests().await.is_empty());
    }
}

/// Runs a join, and if it is still running after 3 s (waiting out a pause), interrupts it as
/// Ctrl-C would.
fn interrupt_after(dir: &PathBuf, uri: &str) -> common::Run {
    let mut child = synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", TOKEN)
        .args(["join", "rows.csv", "--homeserver", uri])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let started = Instant::now();
    let mut interrupted = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if !interrupted && started.elapsed() > Duration::from_secs(3) {
            let sent = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(sent.success());
            interrupted = true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("synbatch did not stop within 30 s, even interrupted");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    finish(
        Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        },
        Some(TOKEN),
    )
}

/// A server that repeats the Authorization header in what it answers.
#[tokio::test(flavor = "multi_thread")]
async fn an_echoed_token_is_never_printed_nor_recorded() {
    let echo = format!("Bearer {TOKEN}");
    let answers = [
        ResponseTemplate::new(403).set_body_json(json!({
            "errcode": "M_FORBIDDEN",
            "error": format!("refused: Authorization: {echo}"),
        })),
        ResponseTemplate::new(200)
            .set_body_string(format!("<html>debug: Authorization: {echo}</html>")),
        // Across the cut at 200 characters of a non-JSON error: no head of it may be left.
        ResponseTemplate::new(400)
            .set_body_string(format!("{}Authorization: {echo}", "x".repeat(170))),
    ];
    for (case, answer) in answers.into_iter().enumerate() {
        let server = common::mock_admin_homeserver().await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/members$"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": []})))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
            .respond_with(answer)
            .mount(&server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        join_input(dir.path());
        // -v prints every row on stdout too; finish() checks stdout and stderr.
        let run = run(
            dir.path(),
            &[
                "join",
                "rows.csv",
                "--homeserver",
                &server.uri(),
                "--retries",
                "0",
                "-v",
            ],
        )
        .await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        let recorded = results_text(dir.path(), "rows.results.csv");
        assert!(!recorded.contains(&TOKEN[..6]), "{case}: {recorded}");
        assert!(recorded.contains("<redac"), "{case}: {recorded}");
    }
}

/// The token pasted into the spreadsheet by mistake: the row is invalid, and its message, key
/// and fields, on the terminal and in the results file, do not carry the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_in_the_input_is_never_printed_nor_recorded() {
    let server = common::mock_admin_homeserver().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!("user,room\n\"pasted {TOKEN}\",!room:mock.test\n"),
    );
    let run = run(
        dir.path(),
        &["join", "rows.csv", "--homeserver", &server.uri(), "-v"],
    )
    .await;
    // finish() has checked stdout and stderr for the token.
    assert_eq!(run.code, 1, "{}", run.stderr);
    let recorded = results_text(dir.path(), "rows.results.csv");
    assert!(recorded.contains(",invalid,"), "{recorded}");
    assert!(!recorded.contains(&TOKEN[..12]), "{recorded}");
    assert!(recorded.contains("<redacted>"), "{recorded}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_echoed_token_at_startup_is_not_printed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "errcode": "M_UNKNOWN_TOKEN",
            "error": format!("Unknown token {TOKEN}"),
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    join_input(dir.path());
    let run = run(
        dir.path(),
        &["join", "rows.csv", "--homeserver", &server.uri()],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("Unknown token <redacted>"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_in_the_homeserver_url_is_refused_before_any_request() {
    let server = common::mock_admin_homeserver().await;
    let with_password = server.uri().replace("http://", "http://admin:hunter2-pw@");
    let dir = tempfile::tempdir().unwrap();
    join_input(dir.path());
    let run = run(
        dir.path(),
        &["join", "rows.csv", "--homeserver", &with_password],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("user name or password"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
    assert!(!run.stdout.contains("hunter2"), "{}", run.stdout);
    assert_eq!(requests(&server).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_answered_without_its_mappings_is_never_written() {
    let server = common::mock_admin_homeserver().await;
    // Synapse always sends `external_ids`; this answer leaves it out.
    let partial: Value = json!({
        "name": "@alice:mock.test", "admin": false, "deactivated": false,
        "threepids": [], "displayname": "Alice"
    });
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v2/users/@alice:mock.test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(partial))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/_synapse/admin/v2/users/.+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"name": "@alice:mock.test"})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "map.csv",
        "user,provider,external_id\n@alice:mock.test,oidc-new,sub-1\n",
    );
    let run = run(
        dir.path(),
        &[
            "set-external-id",
            "map.csv",
            "--homeserver",
            &server.uri(),
            "--retries",
            "0",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("map.results.csv"));
    assert_eq!(lines[0]["status"], "failed", "{lines:?}");
    assert!(lines[0]["message"].contains("external_ids"), "{lines:?}");
    let sent = requests(&server).await;
    assert!(
        sent.contains(&"GET /_synapse/admin/v2/users/@alice:mock.test".to_string()),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|r| r.starts_with("PUT")), "{sent:?}");
}
