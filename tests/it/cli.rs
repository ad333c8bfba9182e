//! The command line without a server: usage errors exit 2 with a message naming the culprit,
//! and a dry run with --server-name needs no network at all.

use crate::common::{self, finish, synbatch, write};

fn run(dir: &std::path::Path, args: &[&str]) -> common::Run {
    let output = synbatch().current_dir(dir).args(args).output().unwrap();
    finish(output, None)
}

#[test]
fn token_on_the_command_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rows.csv", "user,room\n@a:x.org,#r:x.org\n");
    let r = run(
        dir.path(),
        &[
            "join",
            "rows.csv",
            "--homeserver",
            "https://x.org",
            "--token",
            "syt_secret_value",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--token is refused"), "{}", r.stderr);
    assert!(!r.stderr.contains("syt_secret_value"));
}

#[test]
fn unreadable_input_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        dir.path(),
        &["join", "missing.csv", "--dry-run", "--server-name", "x.org"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot read missing.csv"), "{}", r.stderr);
}

#[test]
fn missing_column_names_the_field_and_the_headers_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rows.csv", "name,team\nAlice,#r:x.org\n");
    let r = run(
        dir.path(),
        &["join", "rows.csv", "--dry-run", "--server-name", "x.org"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no column for `user`"), "{}", r.stderr);
    assert!(r.stderr.contains("name, team"), "{}", r.stderr);
    assert!(r.stderr.contains("--column user=HEADER"), "{}", r.stderr);
    // --column fixes it.
    let r = run(
        dir.path(),
        &[
            "join",
            "rows.csv",
            "--dry-run",
            "--server-name",
            "x.org",
            "--column",
            "user=Name",
            "--column",
            "room=team",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "row 1: POST /_synapse/admin/v1/join/#r:x.org {\"user_id\": \"@Alice:x.org\"}"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn no_homeserver_or_no_token_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rows.csv", "user,room\n@a:x.org,#r:x.org\n");
    let r = run(dir.path(), &["join", "rows.csv"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no homeserver"), "{}", r.stderr);
    let r = run(
        dir.path(),
        &["join", "rows.csv", "--homeserver", "https://x.org"],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no access token"), "{}", r.stderr);
    let r = run(
        dir.path(),
        &[
            "join",
            "rows.csv",
            "--homeserver",
            "https://x.org",
            "--token-file",
            "nope.token",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--token-file nope.token"), "{}", r.stderr);
}

#[test]
fn plain_http_to_another_machine_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rows.csv", "user,room\n@a:x.org,#r:x.org\n");
    let output = synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", "syt_x")
        .args([
            "join",
            "rows.csv",
            "--homeserver",
            "http://matrix.example.org",
        ])
        .output()
        .unwrap();
    let r = finish(output, Some("syt_x"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("plain http"), "{}", r.stderr);
}

#[test]
fn bad_options_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rows.csv", "user,room\n@a:x.org,#r:x.org\n");
    for args in [
        &["join", "rows.csv", "-j", "0"][..],
        &["join", "rows.csv", "--rate", "-1"],
        &[
            "join",
            "rows.csv",
            "--room",
            "general",
            "--dry-run",
            "--server-name",
            "x.org",
        ],
        &[
            "join",
            "rows.csv",
            "--column",
            "colour=x",
            "--dry-run",
            "--server-name",
            "x.org",
        ],
        &["join", "rows.csv", "--resume", "--retry-failed"],
    ] {
        let r = run(dir.path(), args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let r = run(
        dir.path(),
        &[
            "join",
            "rows.csv",
            "--retry-failed",
            "--dry-run",
            "--server-name",
            "x.org",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no results file at rows.results.csv"),
        "{}",
        r.stderr
    );
}

#[test]
fn dry_run_plans_rows_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "staff.csv",
        "user\nalice\n@bob:x.org\n@carol:other.org\n",
    );
    let r = run(
        dir.path(),
        &[
            "join",
            "staff.csv",
            "--room",
            "#a:x.org",
            "--room",
            "!b",
            "--dry-run",
            "--server-name",
            "x.org",
        ],
    );
    assert_eq!(r.code, 1, "one remote user is invalid: {}", r.stderr);
    assert!(
        r.stdout.contains(
            "row 1: POST /_synapse/admin/v1/join/#a:x.org {\"user_id\": \"@alice:x.org\"}"
        )
    );
    assert!(
        r.stdout
            .contains("row 2: POST /_synapse/admin/v1/join/!b {\"user_id\": \"@bob:x.org\"}")
    );
    assert!(
        r.stdout
            .contains("row 3: invalid: user `@carol:other.org` is not on this server")
    );
    assert!(
        r.stderr.contains("3 rows -> 4 requests, 2 invalid"),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("staff.results.csv").exists());
}

#[test]
fn help_teaches_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(dir.path(), &["join", "--help"]);
    assert_eq!(r.code, 0);
    for needle in [
        "--room",
        "--resume",
        "--retry-failed",
        "--token-file",
        "already in the room",
    ] {
        assert!(r.stdout.contains(needle), "help lacks {needle}");
    }
}

/// The help of `--room`: from its line to the next blank line.
fn room_help(help: &str) -> &str {
    let start = help
        .find("--room <ROOM>")
        .unwrap_or_else(|| panic!("no --room in the help:\n{help}"));
    let rest = &help[start..];
    &rest[..rest.find("\n\n").unwrap_or(rest.len())]
}

#[test]
fn kick_and_invite_help_do_not_say_join() {
    let dir = tempfile::tempdir().unwrap();
    let kick = run(dir.path(), &["kick", "--help"]);
    assert_eq!(kick.code, 0, "{}", kick.stderr);
    assert!(!kick.stdout.contains("Join"), "{}", kick.stdout);
    let room = room_help(&kick.stdout);
    assert!(room.to_lowercase().contains("kick"), "{room}");

    let invite = run(dir.path(), &["invite", "--help"]);
    assert_eq!(invite.code, 0, "{}", invite.stderr);
    assert!(
        !invite.stdout.contains("Join every user"),
        "{}",
        invite.stdout
    );
}

#[test]
fn a_bad_input_leaves_no_password_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "wrong.csv", "name\nalice\n");
    for input in ["missing.csv", "wrong.csv"] {
        let output = synbatch()
            .current_dir(dir.path())
            .env("SYNBATCH_TOKEN", "syt_not_used")
            .args(["create-users", input, "--generate-passwords", "pw.csv"])
            // Port 9 (discard): nothing may be sent before the input is known good.
            .args(["--homeserver", "http://127.0.0.1:9"])
            .output()
            .unwrap();
        let r = finish(output, Some("syt_not_used"));
        assert_eq!(r.code, 2, "{input}: {}", r.stderr);
        assert!(r.stderr.contains(input), "{}", r.stderr);
        assert!(!dir.path().join("pw.csv").exists(), "{input}");
    }
}
