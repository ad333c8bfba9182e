//! The results file as the CLI reads and writes it: a damaged line costs only itself (for
//! `--resume`, `--retry-failed` and `report`), pending rows run again, a file records its
//! job, and results and reports go only to regular files, never through a symbolic link.
//!
//! Reading is tried with dry runs (`--server-name`, no network); writing with a mock
//! homeserver that must receive no join request.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{self, finish, synbatch, write};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

const HEADER: &str =
    "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,user,room\n";
const TOKEN: &str = "syt_mock_token_do_not_print";

/// A results line of `job` for user `@u{n}:x.org` in `#r:x.org`.
fn line(job: &str, n: u32, status: &str) -> String {
    format!(
        "{n},{job} @u{n}:x.org #r:x.org,{status},200,,\"a, \"\"quoted\"\" message\",1,\
         2025-01-01T00:00:00.000Z,12,@u{n}:x.org,#r:x.org\n"
    )
}

/// `rows.csv` with users 1..=n of x.org in `#r:x.org`.
fn input(dir: &Path, n: u32) {
    let rows: String = (1..=n).map(|i| format!("@u{i}:x.org,#r:x.org\n")).collect();
    write(dir, "rows.csv", &format!("user,room\n{rows}"));
}

/// `rows.csv` with users 1..=n of the mock homeserver.
fn mock_input(dir: &Path, n: u32) {
    let rows: String = (1..=n).map(|i| format!("u{i},!room:mock.test\n")).collect();
    write(dir, "rows.csv", &format!("user,room\n{rows}"));
}

/// Runs synbatch in `dir`, killed (and the test failed) if it has not ended within 30 s: a
/// fifo opened for reading would block it.
fn run(dir: &Path, args: &[&str]) -> common::Run {
    let mut child = synbatch()
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("synbatch {args:?} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    finish(child.wait_with_output().unwrap(), None)
}

fn dry(dir: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec!["join", "rows.csv", "--dry-run", "--server-name", "x.org"];
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// The issue: one stray quote hid every later line, so `--resume` sent finished rows again
/// and `--retry-failed` saw almost none of the failed ones.
#[test]
fn a_stray_quote_costs_resume_and_retry_only_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 100);
    let mut text = HEADER.to_string();
    for n in 1..=100 {
        text += &line("join", n, if n % 10 == 0 { "failed" } else { "ok" });
    }
    // Line 4 (user 3): a quote opens its key and never closes.
    let text = text.replacen(",join @u3:", ",\"join @u3:", 1);
    write(dir.path(), "rows.results.csv", &text);

    let r = dry(dir.path(), &["--resume"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("warning: rows.results.csv: 1 unreadable line skipped (line number 4)"),
        "{}",
        r.stderr
    );
    // 89 ok rows are done; the 10 failed rows and user 3 (its line unread) run.
    assert!(
        r.stderr
            .contains("100 rows -> 11 requests, 0 invalid, 89 skipped as done"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("\"@u3:x.org\""), "{}", r.stdout);

    let r = dry(dir.path(), &["--retry-failed"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("1 unreadable line skipped"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("100 rows -> 10 requests, 0 invalid, 90 skipped"),
        "{}",
        r.stderr
    );

    let r = run(dir.path(), &["report", "rows.results.csv"]);
    assert_eq!(r.code, 1, "failed rows: {}", r.stderr);
    assert!(
        r.stdout.contains("99 lines, 99 rows"),
        "not 5 rows of 1,000: {}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("1 unreadable line skipped (line number 4)"),
        "{}",
        r.stdout
    );
}

/// A row whose latest line is `pending` was being sent when a run was killed: not done, in
/// doubt.
#[test]
fn pending_rows_run_again_on_resume_and_retry_and_report_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 4);
    let text = [
        HEADER.to_string(),
        line("join", 1, "pending"),
        line("join", 1, "ok"), // it ended
        line("join", 2, "pending"),
        line("join", 3, "ok"),
        line("join", 4, "failed"),
    ]
    .concat();
    write(dir.path(), "rows.results.csv", &text);
    let r = dry(dir.path(), &["--resume"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("4 rows -> 2 requests"), "{}", r.stderr);
    assert!(r.stdout.contains("\"@u2:x.org\""), "{}", r.stdout);
    assert!(!r.stderr.contains("unreadable"), "{}", r.stderr);
    let r = dry(dir.path(), &["--retry-failed"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("4 rows -> 2 requests"), "{}", r.stderr);
    assert!(r.stdout.contains("\"@u2:x.org\""), "{}", r.stdout);
    assert!(r.stdout.contains("\"@u4:x.org\""), "{}", r.stdout);

    let r = run(dir.path(), &["report", "rows.results.csv"]);
    assert!(r.stdout.contains("  pending           1"), "{}", r.stdout);
    assert!(r.stdout.contains("pending: 1 row was"), "{}", r.stdout);
    assert!(r.stdout.contains("with --resume"), "{}", r.stdout);

    // Nothing failed, one row still pending: not every row is known to be done.
    let text = [
        HEADER.to_string(),
        line("join", 1, "ok"),
        line("join", 2, "pending"),
    ]
    .concat();
    write(dir.path(), "pending.results.csv", &text);
    let r = run(dir.path(), &["report", "pending.results.csv"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
}

/// invite, kick and join write the same columns: the keys say whose a file is.
#[test]
fn resume_from_another_jobs_results_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 2);
    let text = [HEADER.to_string(), line("invite", 1, "ok")].concat();
    write(dir.path(), "rows.results.csv", &text);
    for mode in ["--resume", "--retry-failed"] {
        let r = dry(dir.path(), &[mode]);
        assert_eq!(r.code, 2, "{mode}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("holds the results of `invite`, not of `join`"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.contains("with -o"), "{}", r.stderr);
        assert!(r.stdout.is_empty(), "nothing planned: {}", r.stdout);
    }
    // Its own job takes it.
    let r = run(
        dir.path(),
        &[
            "invite",
            "rows.csv",
            "--dry-run",
            "--server-name",
            "x.org",
            "--resume",
            "-o",
            "rows.results.csv",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("1 skipped as done"), "{}", r.stderr);
}

/// A file written before the job was checked (a header and lines) is still taken.
#[test]
fn results_of_the_previous_version_are_resumed() {
    let dir = tempfile::tempdir().unwrap();
    input(dir.path(), 3);
    let text = [
        HEADER.to_string(),
        line("join", 1, "ok"),
        line("join", 2, "unchanged"),
    ]
    .concat();
    write(dir.path(), "rows.results.csv", &text);
    let r = dry(dir.path(), &["--resume"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("3 rows -> 1 requests"), "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
}

/// A real run of join against a mock homeserver that must see no join request; returns the
/// run and the mock's join requests.
async fn join_run(dir: &Path, extra: &[&str]) -> (common::Run, usize) {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"room_id": "!room:mock.test"})),
        )
        .mount(&server)
        .await;
    let (url, dir) = (server.uri(), dir.to_path_buf());
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
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
    .unwrap();
    let joins = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path().starts_with("/_synapse/admin/v1/join/"))
        .count();
    (run, joins)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_into_another_jobs_results_is_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    mock_input(dir.path(), 2);
    let text = [HEADER.to_string(), line("kick", 1, "ok")].concat();
    write(dir.path(), "kicked.csv", &text);
    let (r, joins) = join_run(dir.path(), &["-o", "kicked.csv"]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("holds the results of `kick`, not of `join`"),
        "{}",
        r.stderr
    );
    assert_eq!(joins, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("kicked.csv")).unwrap(),
        text
    );
    // The mock does join: a run into a file of its own works.
    let (r, joins) = join_run(dir.path(), &["-o", "joined.csv"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(joins, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_as_results_file_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    mock_input(dir.path(), 2);
    // The results of an earlier join: --resume reads them through the link, the run must not
    // write there.
    let earlier = [HEADER.to_string(), line("join", 1, "ok")].concat();
    let target = write(dir.path(), "precious.csv", &earlier);
    std::os::unix::fs::symlink(&target, dir.path().join("link.csv")).unwrap();
    // A dangling link would otherwise create its target.
    std::os::unix::fs::symlink(
        dir.path().join("nowhere.csv"),
        dir.path().join("dangling.csv"),
    )
    .unwrap();
    for (link, extra) in [
        ("link.csv", None),
        ("dangling.csv", None),
        ("link.csv", Some("--resume")),
    ] {
        let mut args = vec!["-o", link];
        args.extend(extra);
        let (r, joins) = join_run(dir.path(), &args).await;
        assert_eq!(r.code, 2, "{link} {extra:?}: {}", r.stderr);
        assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
        assert_eq!(joins, 0);
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), earlier);
    assert!(!dir.path().join("nowhere.csv").exists());
    let link = std::fs::symlink_metadata(dir.path().join("link.csv")).unwrap();
    assert!(link.file_type().is_symlink());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_or_fifo_as_results_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    mock_input(dir.path(), 2);
    let fifo = dir.path().join("fifo.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    for (path, extra) in [
        ("/dev/null", None),
        ("/dev/null", Some("--resume")),
        (fifo, None),
        (fifo, Some("--retry-failed")), // read first: it must not block
    ] {
        let mut args = vec!["-o", path];
        args.extend(extra);
        let (r, joins) = join_run(dir.path(), &args).await;
        assert_eq!(r.code, 2, "{path} {extra:?}: {}", r.stderr);
        assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
        assert_eq!(joins, 0);
    }
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(
        null.file_type().is_char_device(),
        "/dev/null is still a device"
    );
}

#[test]
fn report_failed_goes_only_to_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = [HEADER.to_string(), line("join", 1, "failed")].concat();
    write(dir.path(), "r.csv", &text);
    let target = write(dir.path(), "precious.txt", "precious\n");
    std::os::unix::fs::symlink(&target, dir.path().join("link.csv")).unwrap();
    let r = run(
        dir.path(),
        &["report", "r.csv", "--failed", "link.csv", "--force"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let r = run(
        dir.path(),
        &["report", "r.csv", "--failed", "/dev/null", "--force"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    // A regular file is replaced by the failed rows, with --force only.
    write(dir.path(), "retry.csv", &"an old list\n".repeat(20));
    let r = run(dir.path(), &["report", "r.csv", "--failed", "retry.csv"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("pass --force"), "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("retry.csv")).unwrap(),
        "an old list\n".repeat(20)
    );
    let r = run(
        dir.path(),
        &["report", "r.csv", "--failed", "retry.csv", "--force"],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("retry.csv")).unwrap(),
        "user,room\n@u1:x.org,#r:x.org\n"
    );
    // Reading a fifo as the results would block: it is refused.
    let fifo = dir.path().join("fifo.csv");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let r = run(dir.path(), &["report", "fifo.csv"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
}
