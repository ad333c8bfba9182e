//! The files synbatch writes besides the results, against mock servers on 127.0.0.1:
//! `create-users --generate-passwords FILE` (a password already in the file is reused, a torn
//! last line is cut, a write that fails leaves no half line and fails its row, links and other
//! users' files are refused) and `export-users -o PATH` (only a regular file or nothing is
//! renamed over, a planted `.partial` is neither followed nor removed, a failed export leaves
//! nothing, and a failed write to stdout is not a success).
//!
//! A full disk is stood in for by a file size limit (RLIMIT_FSIZE) on the synbatch process: its
//! writes past the limit fail (EFBIG) as they would on a full disk, after a short write.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{self, finish, results, synbatch, write};

const TOKEN: &str = "syt_mock_files_token";

/// A mock admin homeserver listing `listed` accounts; a GET of one account finds it with no
/// SSO mappings, and a PUT creates it.
async fn homeserver(listed: &[&str]) -> MockServer {
    let server = common::mock_admin_homeserver().await;
    let users: Vec<Value> = listed.iter().map(|n| json!({"name": n})).collect();
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v2/users"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"users": users, "total": listed.len()})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v2/users/@.+$"))
        .respond_with(TheAccount(200))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(r"^/_synapse/admin/v2/users/@.+$"))
        .respond_with(TheAccount(201))
        .mount(&server)
        .await;
    server
}

/// The account the path names, with no SSO mappings or emails, as Synapse shows it.
struct TheAccount(u16);

impl wiremock::Respond for TheAccount {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let segment = request.url.path().rsplit('/').next().unwrap_or_default();
        let name = segment.replace("%40", "@").replace("%3A", ":");
        ResponseTemplate::new(self.0)
            .set_body_json(json!({"name": name, "external_ids": [], "threepids": []}))
    }
}

/// synbatch against `server`, in `dir`.
fn command(server: &MockServer, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = synbatch();
    cmd.current_dir(dir)
        .env("SYNBATCH_TOKEN", TOKEN)
        .arg(args[0])
        .args(["--homeserver", &server.uri()])
        .args(&args[1..]);
    cmd
}

async fn run(mut cmd: Command) -> common::Run {
    tokio::task::spawn_blocking(move || finish(cmd.output().unwrap(), Some(TOKEN)))
        .await
        .unwrap()
}

/// Writes to regular files past `bytes` fail for the process (EFBIG, after a short write), as
/// on a full disk. SIGXFSZ is ignored, so the write fails rather than the process dying; an
/// ignored signal stays ignored across exec.
fn limit_file_size(cmd: &mut Command, bytes: u64) {
    // SAFETY: signal and setrlimit are async-signal-safe, and nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The PUT bodies the server got, by user.
async fn puts(server: &MockServer) -> Vec<(String, Value)> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .map(|r| {
            let user = r.url.path().rsplit('/').next().unwrap().to_string();
            (user, serde_json::from_slice(&r.body).unwrap())
        })
        .collect()
}

/// Whether the server was asked for its account list (or anything past the token check).
async fn listed(server: &MockServer) -> bool {
    let requests = server.received_requests().await.unwrap();
    requests
        .iter()
        .any(|r| r.url.path().starts_with("/_synapse/admin/v2/"))
}

/// A file of `content`, mode 0600.
fn private(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = write(dir, name, content);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn lines_of(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test]
async fn a_password_already_in_the_file_is_set_again_and_not_written_twice() {
    let server = homeserver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hires.csv", "user\nu\nv\n");
    let pw = private(
        dir.path(),
        "pw.csv",
        "user,password\n@u:mock.test,OLDPASS\n",
    );
    let r = run(command(
        &server,
        dir.path(),
        &[
            "create-users",
            "hires.csv",
            "--generate-passwords",
            "pw.csv",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    let sent = puts(&server).await;
    let body = |user: &str| &sent.iter().find(|(u, _)| u == user).unwrap().1;
    assert_eq!(body("@u:mock.test")["password"], "OLDPASS");
    let new = body("@v:mock.test")["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new, "OLDPASS");
    assert_eq!(
        lines_of(&pw),
        [
            "user,password".to_string(),
            "@u:mock.test,OLDPASS".into(),
            format!("@v:mock.test,{new}"),
        ],
        "one line for @u, the old one; a new line for @v"
    );
    assert!(!r.stderr.contains("OLDPASS") && !r.stderr.contains(&new));
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_and_its_user_named() {
    let server = homeserver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hires.csv", "user\nt\n");
    let pw = private(
        dir.path(),
        "pw.csv",
        "user,password\n@a:mock.test,AAA\n@t:mock.test,HALFPA",
    );
    let r = run(command(
        &server,
        dir.path(),
        &[
            "create-users",
            "hires.csv",
            "--generate-passwords",
            "pw.csv",
        ],
    ))
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("half a line") && r.stderr.contains("for @t:mock.test"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("HALFPA") && !r.stderr.contains("AAA"));

    let sent = puts(&server).await;
    let password = sent[0].1["password"].as_str().unwrap();
    assert_ne!(password, "HALFPA");
    assert_eq!(
        lines_of(&pw),
        [
            "user,password".to_string(),
            "@a:mock.test,AAA".into(),
            format!("@t:mock.test,{password}"),
        ],
        "the half line is gone and nothing is glued to it"
    );
}

#[tokio::test]
async fn a_password_that_cannot_be_written_fails_its_row_before_the_put_and_leaves_no_half_line() {
    let server = homeserver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hires.csv", "user\nu\n");
    // Lines of earlier runs, so that the file is longer than the results file will be: the
    // limit lets the results be written, and 5 bytes of the new password line.
    let mut before = String::from("user,password\n");
    for i in 0..60 {
        before.push_str(&format!("@earlier{i}:mock.test,PwPwPwPwPwPwPwPwPwPwPwPw\n"));
    }
    let pw = private(dir.path(), "pw.csv", &before);
    let mut cmd = command(
        &server,
        dir.path(),
        &[
            "create-users",
            "hires.csv",
            "--generate-passwords",
            "pw.csv",
        ],
    );
    limit_file_size(&mut cmd, before.len() as u64 + 5);
    let r = run(cmd).await;

    assert_eq!(r.code, 1, "a failed row, not a success: {}", r.stderr);
    assert_eq!(
        fs::read_to_string(&pw).unwrap(),
        before,
        "no half line is left at the end of the file"
    );
    assert!(
        puts(&server).await.is_empty(),
        "no PUT: the account is not made"
    );
    let line = &results(&dir.path().join("hires.results.csv"))[0];
    assert_eq!(line["status"], "failed", "{line:?}");
    let message = &line["message"];
    assert!(
        message.contains("cannot write the password of @u:mock.test")
            && message.contains("the account was not created"),
        "{message}"
    );
}

#[tokio::test]
async fn a_password_file_behind_a_link_or_of_another_user_is_refused_untouched() {
    let server = homeserver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "hires.csv", "user\nu\n");
    let content = "user,password\n@a:mock.test,AAA\n";
    let target = private(dir.path(), "target.csv", content);
    std::os::unix::fs::symlink(&target, dir.path().join("link.csv")).unwrap();
    let mut files = vec![("link.csv", "symbolic link")];
    // Only root can write to another user's private file, and only root can make one.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = private(dir.path(), "theirs.csv", content);
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        files.push(("theirs.csv", "belongs to another user"));
    }
    for (file, why) in files {
        let r = run(command(
            &server,
            dir.path(),
            &["create-users", "hires.csv", "--generate-passwords", file],
        ))
        .await;
        assert_eq!(r.code, 2, "{file}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{file}: {}", r.stderr);
        assert_eq!(
            fs::read_to_string(dir.path().join(file)).unwrap(),
            content,
            "{file}"
        );
    }
    assert!(
        fs::symlink_metadata(dir.path().join("link.csv"))
            .unwrap()
            .is_symlink()
    );
    assert!(puts(&server).await.is_empty());
}

/// The server's three accounts, exported.
const EXPORT: &[&str] = &["@a:mock.test", "@b:mock.test", "@c:mock.test"];

fn export(server: &MockServer, dir: &Path, output: &str) -> Command {
    command(server, dir, &["export-users", "-o", output])
}

#[tokio::test]
async fn export_to_a_symbolic_link_is_refused_and_the_link_and_its_target_stay() {
    let server = homeserver(EXPORT).await;
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "target.csv", "precious\n");
    let link = dir.path().join("users.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let r = run(export(&server, dir.path(), "users.csv")).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("symbolic link"), "{}", r.stderr);
    assert_eq!(fs::read_link(&link).unwrap(), target);
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(!dir.path().join("users.csv.partial").exists());
    assert!(!listed(&server).await, "refused before anything is asked");
}

#[tokio::test]
async fn export_to_a_named_pipe_or_a_device_is_refused_and_they_stay() {
    let server = homeserver(EXPORT).await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // A device like /dev/null (1, 3) of the test's own, made as root; otherwise /dev/null
    // itself, which a user who is not root cannot replace anyway.
    let fake = dir.path().join("null");
    let device = match Command::new("mknod")
        .arg(&fake)
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => fake,
        _ => PathBuf::from("/dev/null"),
    };
    let rdev = fs::symlink_metadata(&device).unwrap().rdev();
    for (output, why) in [
        (fifo.to_str().unwrap(), "a named pipe"),
        (device.to_str().unwrap(), "a character device"),
    ] {
        let r = run(export(&server, dir.path(), output)).await;
        assert_eq!(r.code, 2, "{output}: {}", r.stderr);
        assert!(
            r.stderr.contains(why) && r.stderr.contains("redirect stdout"),
            "{}",
            r.stderr
        );
    }
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let meta = fs::symlink_metadata(&device).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{device:?} is still a device"
    );
    assert_eq!(meta.rdev(), rdev);
    assert!(!dir.path().join("fifo.partial").exists());
    assert!(!listed(&server).await);
}

#[tokio::test]
async fn a_planted_partial_file_is_neither_written_through_nor_removed() {
    let server = homeserver(EXPORT).await;
    let dir = tempfile::tempdir().unwrap();
    let target = write(dir.path(), "target.csv", "precious\n");
    let partial = dir.path().join("users.csv.partial");
    std::os::unix::fs::symlink(&target, &partial).unwrap();
    let r = run(export(&server, dir.path(), "users.csv")).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("users.csv.partial exists") && r.stderr.contains("remove it"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_link(&partial).unwrap(), target);
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(!dir.path().join("users.csv").exists());

    // A regular one too (an earlier export that did not finish, or someone else's).
    fs::remove_file(&partial).unwrap();
    write(dir.path(), "users.csv.partial", "someone's\n");
    let r = run(export(&server, dir.path(), "users.csv")).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(fs::read_to_string(&partial).unwrap(), "someone's\n");
    assert!(!dir.path().join("users.csv").exists());
}

#[tokio::test]
async fn export_replaces_a_regular_file_and_a_failed_one_leaves_nothing() {
    let server = homeserver(EXPORT).await;
    let dir = tempfile::tempdir().unwrap();
    let out = write(dir.path(), "users.csv", "last week's\n");
    let partial = dir.path().join("users.csv.partial");

    // The disk fills up at once: the old export stays, and no .partial blocks the next run.
    let mut cmd = export(&server, dir.path(), "users.csv");
    limit_file_size(&mut cmd, 10);
    let r = run(cmd).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write to users.csv"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), "last week's\n");
    assert!(!partial.exists(), "the failed export's .partial is removed");

    let r = run(export(&server, dir.path(), "users.csv")).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let users: Vec<String> = results(&out).iter().map(|l| l["user"].clone()).collect();
    assert_eq!(users, EXPORT);
    assert!(fs::symlink_metadata(&out).unwrap().is_file());
    assert!(!partial.exists());
}

#[tokio::test]
async fn a_failed_write_to_stdout_is_not_a_success_but_a_closed_pipe_is() {
    let server = homeserver(EXPORT).await;
    let dir = tempfile::tempdir().unwrap();
    for extra in [None, Some("--with-external-ids")] {
        let mut cmd = command(&server, dir.path(), &["export-users"]);
        cmd.args(extra);
        let full = File::options().write(true).open("/dev/full").unwrap();
        cmd.stdout(Stdio::from(full));
        let r = run(cmd).await;
        assert_ne!(r.code, 0, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr
                .contains("cannot write to stdout: No space left on device"),
            "{extra:?}: {}",
            r.stderr
        );

        // `| head` that has read enough: not an error.
        let mut cmd = command(&server, dir.path(), &["export-users"]);
        cmd.args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let r = tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().unwrap();
            // The reader goes away before synbatch has written anything (it connects first).
            drop(child.stdout.take());
            finish(child.wait_with_output().unwrap(), Some(TOKEN))
        })
        .await
        .unwrap();
        assert_eq!(r.code, 0, "{extra:?}: {}", r.stderr);
        assert!(r.stderr.contains("closed it"), "{extra:?}: {}", r.stderr);
    }
}

/// The disk fills up under the results file: the run stops (exit 3), and its summary counts
/// only the rows whose lines reached the file.
#[tokio::test]
async fn a_full_disk_under_the_results_stops_the_run_and_counts_only_written_rows() {
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_synapse/admin/v1/rooms/[^/]+/members$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"members": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/_synapse/admin/v1/join/.+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"room_id": "!r:mock.test"})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..40)
        .map(|i| format!("@u{i}:mock.test,!r:mock.test\n"))
        .collect();
    write(dir.path(), "rows.csv", &format!("user,room\n{rows}"));
    let mut cmd = command(&server, dir.path(), &["join", "rows.csv", "-j", "1"]);
    limit_file_size(&mut cmd, 2_000);
    let r = run(cmd).await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write the results file"),
        "{}",
        r.stderr
    );
    let file = common::results_file(&dir.path().join("rows.results.csv"));
    let written = file.lines.iter().filter(|l| l["status"] == "ok").count();
    assert!(written > 0 && written < 40, "{written} rows written");
    assert!(
        r.stderr.contains(&format!(": {written} ok,")),
        "the summary counts the {written} rows in the file: {}",
        r.stderr
    );
}
