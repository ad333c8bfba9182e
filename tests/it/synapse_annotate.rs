//! `--annotate OUT` against the real Synapse: the input sheet comes back row for row, every
//! column kept, with each row's status, through a SIGKILL and a `--resume`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{self, Synapse, enc, results, run_against, synapse, write};
use crate::workbooks;

/// Runs synbatch and SIGKILLs it once the results file has `lines` lines (or it ends).
fn run_and_kill(hs: &Synapse, dir: &Path, args: &[&str], results: &Path, lines: usize) {
    let mut child = common::synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .arg(args[0])
        .args(["--homeserver", &hs.url])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let n = std::fs::read(results).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
        if n >= lines {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "run never got going"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn annotated_sheet_matches_the_input_row_for_row_through_a_kill_and_resume() {
    let hs = synapse("relaxed");
    let users = hs.users("annot", 40).await;
    let (room_a, alias_a) = hs.room("annot-a", true).await;
    let (room_b, alias_b) = hs.room("annot-b", true).await;
    // One user banned from room B: their row is half done, half failed.
    let banned = &users[7];
    let (status, body) = hs
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&room_b)),
            Some(json!({"user_id": banned})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("Dept,Matrix ID,Name\n");
    let mut expected = vec![];
    for (i, user) in users.iter().enumerate() {
        input.push_str(&format!("D{i},{user},\"Person {i}, HR\"\n"));
        expected.push(vec![
            format!("D{i}"),
            user.clone(),
            format!("Person {i}, HR"),
        ]);
        if i == 3 {
            // A blank line: not a row, but the sheet's row numbers go on counting it.
            input.push('\n');
        }
    }
    input.push_str("D99,not a user,Nobody\n");
    expected.push(vec!["D99".into(), "not a user".into(), "Nobody".into()]);
    write(dir.path(), "staff.csv", &input);
    let results_path = dir.path().join("results.csv");
    let args = [
        "join",
        "staff.csv",
        "--room",
        &alias_a,
        "--room",
        &alias_b,
        "-o",
        "results.csv",
        "-j",
        "2",
        "--annotate",
        "back.xlsx",
    ];
    run_and_kill(&hs, dir.path(), &args, &results_path, 12);
    let done_before = results(&results_path).len();
    assert!(
        done_before < 82,
        "killed before the end: {done_before} lines"
    );

    let mut resume: Vec<&str> = args.to_vec();
    resume.push("--resume");
    let run = run_against(&hs, dir.path(), &resume);
    assert_eq!(
        run.code, 1,
        "one failed and one invalid row: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("annotated sheet: back.xlsx (41 rows)"),
        "{}",
        run.stderr
    );
    // The same from the results file alone, as CSV.
    let mut csv_args: Vec<&str> = resume.clone();
    let at = csv_args.iter().position(|a| *a == "back.xlsx").unwrap();
    csv_args[at] = "back.csv";
    let run = run_against(&hs, dir.path(), &csv_args);
    assert_eq!(run.code, 1, "{}", run.stderr);

    let sheet = workbooks::read_xlsx(&dir.path().join("back.xlsx"));
    let mut reader = csv::Reader::from_path(dir.path().join("back.csv")).unwrap();
    let mut csv_rows: Vec<Vec<String>> =
        vec![reader.headers().unwrap().iter().map(String::from).collect()];
    csv_rows.extend(
        reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect()),
    );
    for rows in [&sheet, &csv_rows] {
        assert_eq!(
            rows[0],
            [
                "Dept",
                "Matrix ID",
                "Name",
                "status",
                "message",
                "resolved_user",
                "sheet_row"
            ]
        );
        assert_eq!(rows.len(), expected.len() + 1, "one line per input row");
        for (i, (row, want)) in rows[1..].iter().zip(&expected).enumerate() {
            assert_eq!(
                &row[..3],
                &want[..],
                "row {i}: the sheet's own cells, in order"
            );
            let sheet_row = if i <= 3 { i + 2 } else { i + 3 };
            assert_eq!(row[6], sheet_row.to_string(), "row {i}: sheet_row");
            let (status, message, resolved) = (&row[3], &row[4], &row[5]);
            if i == expected.len() - 1 {
                assert_eq!(status, "invalid");
                assert!(message.contains("not a user"), "{row:?}");
            } else if &users[i] == banned {
                assert_eq!(status, "failed");
                assert!(
                    message.starts_with("1 of 2 failed: ") && message.contains(&alias_b),
                    "{message}"
                );
                assert_eq!(resolved, banned);
            } else {
                assert_eq!((status.as_str(), message.as_str()), ("ok", ""), "row {i}");
                assert_eq!(resolved, &users[i]);
            }
        }
    }
    let (a, b) = (hs.members(&room_a).await, hs.members(&room_b).await);
    for user in &users {
        assert!(a.contains(user), "{user} in A");
        assert_eq!(b.contains(user), user != banned, "{user} in B");
    }
}

#[test]
fn annotate_is_refused_up_front_where_it_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.csv", "user,room\n@a:x,#r:x\n");
    write(
        dir.path(),
        "a.json",
        "[{\"user\":\"@a:x\",\"room\":\"#r:x\"}]",
    );
    for (args, says) in [
        (vec!["a.csv", "--annotate", "out.txt"], ".csv or .xlsx"),
        (
            vec!["a.csv", "--annotate", "a.csv"],
            "the input or the results file",
        ),
        (
            vec!["a.csv", "--annotate", "o.csv", "--dry-run"],
            "--dry-run",
        ),
        (vec!["a.json", "--annotate", "o.csv"], "not JSON"),
        (vec!["-", "--annotate", "o.csv"], "stdin"),
    ] {
        let out = common::synbatch()
            .current_dir(dir.path())
            .arg("join")
            .args(["--homeserver", "http://127.0.0.1:9", "--server-name", "x"])
            .env("SYNBATCH_TOKEN", "t")
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(!dir.path().join("o.csv").exists());
}
