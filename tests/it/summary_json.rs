//! `--summary-json` and `report --json` against a real Synapse: the summary of a real run and
//! of its results file validate against schemas/summary.schema.json, failures are grouped by
//! cause (a missing user, room and email are three groups, not "M_NOT_FOUND 3"), stdout holds
//! the JSON alone with `-`, and a run that is aborted still writes its summary.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{results, run_against, synapse, synbatch, unique, write};

pub fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/summary.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

/// Panics with every error if `summary` does not match the schema.
pub fn assert_valid(summary: &Value) {
    let errors: Vec<String> = schema()
        .iter_errors(summary)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{summary:#}");
}

/// The one JSON document a stdout must hold, and nothing else.
pub fn only_json(stdout: &str) -> Value {
    let mut docs = serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    let first = docs
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout: {stdout:?}"))
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"));
    assert!(docs.next().is_none(), "more than one value: {stdout:?}");
    assert!(stdout.ends_with("}\n"), "{stdout:?}");
    first
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    only_json(&text)
}

/// (status, cause, errcode, count) of each failure group, sorted.
fn groups(summary: &Value) -> Vec<(String, String, String, u64)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let mut out: Vec<_> = summary["failures"]
        .as_array()
        .expect("failures is an array")
        .iter()
        .map(|g| {
            (
                s(&g["status"]),
                s(&g["cause"]),
                s(&g["errcode"]),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_run_and_its_report_give_summaries_that_validate_and_group_by_cause() {
    let hs = synapse("relaxed");
    let users = hs.users("sj", 3).await;
    let (_, alias) = hs.room("sj", true).await;
    let nobody = format!("@{}:{}", unique("nobody"), hs.server_name);
    let no_room = format!("#{}:{}", unique("noroom"), hs.server_name);
    let no_email = format!("{}@example.invalid", unique("noone"));
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "user,room\n{},{alias}\n{nobody},{alias}\n{},{no_room}\n{no_email},{alias}\nnot a user!,{alias}\n",
        users[0], users[1]
    );
    write(dir.path(), "rows.csv", &input);

    let run = run_against(
        &hs,
        dir.path(),
        &["join", "rows.csv", "--summary-json", "summary.json"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "", "the summary went to its file");
    let summary = read_json(&dir.path().join("summary.json"));
    assert_valid(&summary);
    assert_eq!(summary["source"], "run");
    assert_eq!(summary["job"], "join");
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["error"], Value::Null);
    assert_eq!(
        (summary["dry_run"].clone(), summary["check"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(summary["results"], "rows.results.csv");
    assert_eq!(
        summary["counts"],
        json!({"ok": 1, "unchanged": 0, "failed": 3, "invalid": 1, "pending": 0})
    );
    assert_eq!(
        (summary["rows"].clone(), summary["skipped"].clone()),
        (json!(5), json!(0))
    );
    assert!(summary["started_at"].as_str() <= summary["finished_at"].as_str());
    let not_found = |cause: &str| {
        (
            "failed".to_string(),
            cause.to_string(),
            "M_NOT_FOUND".to_string(),
            1,
        )
    };
    let expected = vec![
        not_found("email_not_found"),
        not_found("room_not_found"),
        not_found("user_not_found"),
        ("invalid".into(), "".into(), "".into(), 1),
    ];
    assert_eq!(groups(&summary), expected, "{summary:#}");

    // The results file carries the causes, row by row.
    let lines = results(&dir.path().join("rows.results.csv"));
    let cause_of = |user: &str| {
        lines
            .iter()
            .find(|l| l["user"] == user)
            .unwrap_or_else(|| panic!("{user}: {lines:?}"))["cause"]
            .clone()
    };
    assert_eq!(cause_of(&nobody), "user_not_found");
    assert_eq!(cause_of(&users[1]), "room_not_found");
    assert_eq!(cause_of(&no_email), "email_not_found");
    assert_eq!(cause_of(&users[0]), "");

    // report --json: the same shape and the same counts and groups, from the file.
    let run = synbatch()
        .current_dir(dir.path())
        .args(["report", "rows.results.csv", "--json"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let report = only_json(&String::from_utf8(run.stdout).unwrap());
    assert_valid(&report);
    assert_eq!(report["source"], "report");
    assert_eq!(report["job"], "join");
    assert_eq!(report["counts"], summary["counts"]);
    assert_eq!(report["failures"], summary["failures"]);
    assert_eq!(report["duration_ms"], Value::Null);
    // The text report says the same in words.
    let run = synbatch()
        .current_dir(dir.path())
        .args(["report", "rows.results.csv"])
        .output()
        .unwrap();
    let text = String::from_utf8(run.stdout).unwrap();
    for words in [
        "user not found (M_NOT_FOUND, HTTP 404)",
        "room not found (M_NOT_FOUND, HTTP 404)",
        "email not found (M_NOT_FOUND, HTTP 404)",
    ] {
        assert!(text.contains(words), "{words}:\n{text}");
    }

    // With `-`, stdout holds the summary alone: a resume skips the done row.
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "rows.csv", "--resume", "--summary-json", "-"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let resumed = only_json(&run.stdout);
    assert_valid(&resumed);
    assert_eq!(resumed["skipped"], 1);
    assert_eq!(resumed["counts"]["ok"], 0);
    assert_eq!(resumed["counts"]["failed"], 3);

    // A dry run's lines go to stderr then; it writes no results.
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "rows.csv", "--dry-run", "--summary-json", "-"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let dry = only_json(&run.stdout);
    assert_valid(&dry);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["results"], Value::Null);
    assert_eq!(dry["counts"]["invalid"], 1);
    assert!(
        run.stderr.contains("POST /_synapse/admin/v1/join/"),
        "{}",
        run.stderr
    );

    // --check: what would fail, by the same causes.
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "rows.csv", "--check", "--summary-json", "-"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let check = only_json(&run.stdout);
    assert_valid(&check);
    assert_eq!(check["check"], true);
    let causes: Vec<String> = groups(&check).into_iter().map(|g| g.1).collect();
    assert_eq!(
        causes,
        ["email_not_found", "room_not_found", "user_not_found", ""],
        "{check:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aborted_run_still_writes_its_summary_with_its_exit_code() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        "user,room\n@a:localhost,#r:localhost\n",
    );
    let run = synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", "syt_not_a_real_token")
        .args(["join", "rows.csv", "--homeserver", &hs.url])
        .args(["--summary-json", "summary.json"])
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = read_json(&dir.path().join("summary.json"));
    assert_valid(&summary);
    assert_eq!(summary["exit_code"], 3);
    let error = summary["error"].as_str().expect("an aborted run says why");
    assert!(error.contains("token"), "{error}");
    assert!(!error.contains("syt_not_a_real_token"), "{error}");
    assert_eq!(summary["counts"]["ok"], 0);

    // A summary that cannot be written stops the run before anything is sent.
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "rows.csv", "--summary-json", "no/such/dir/s.json"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--summary-json"), "{}", run.stderr);
    assert!(!dir.path().join("rows.results.csv").exists());
}

/// The validation can fail: a valid summary passes, and each way of breaking it is refused.
#[test]
fn the_schema_rejects_objects_that_are_not_summaries() {
    let valid = json!({
        "synbatch_version": "0.1.0", "source": "run", "job": "join",
        "started_at": "2026-11-30T03:00:00.000Z", "finished_at": "2026-11-30T03:00:01.500Z",
        "duration_ms": 1500, "dry_run": false, "check": false, "results": "r.csv",
        "exit_code": 1, "error": null, "rows": 3, "skipped": 0,
        "counts": {"ok": 1, "unchanged": 0, "failed": 2, "invalid": 0, "pending": 0},
        "failures": [{"status": "failed", "cause": "user_not_found", "errcode": "M_NOT_FOUND",
                      "http_status": 404, "description": "user not found (M_NOT_FOUND, HTTP 404)",
                      "count": 2, "example": "User not found"}],
        "failures_not_grouped": 0
    });
    assert_valid(&valid);
    let validator = schema();
    type Break = fn(&mut Value);
    let broken: [(&str, Break); 7] = [
        ("no pending count", |v| {
            v["counts"].as_object_mut().unwrap().remove("pending");
        }),
        ("an exit code that is none", |v| v["exit_code"] = json!(7)),
        ("an unknown key", |v| v["extra"] = json!(1)),
        ("a cause that is not a slug", |v| {
            v["failures"][0]["cause"] = json!("User Not Found")
        }),
        ("a date that is not RFC 3339", |v| {
            v["started_at"] = json!("30/11/2026 03:00")
        }),
        ("a negative count", |v| v["counts"]["ok"] = json!(-1)),
        ("a group of no rows", |v| {
            v["failures"][0]["count"] = json!(0)
        }),
    ];
    for (what, break_it) in broken {
        let mut wrong = valid.clone();
        break_it(&mut wrong);
        assert!(!validator.is_valid(&wrong), "accepted {what}: {wrong:#}");
    }
}

/// Ctrl-C: the rows in flight finish, and the summary says 130 and counts what was recorded.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_run_writes_its_summary_with_exit_130() {
    let hs = synapse("relaxed");
    let users = hs.users("sjint", 120).await;
    let (_, alias) = hs.room("sjint", true).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "many.csv",
        &format!("user\n{}\n", users.join("\n")),
    );
    let results_path = dir.path().join("many.results.csv");
    let child = synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .args([
            "join",
            "many.csv",
            "--homeserver",
            &hs.url,
            "--room",
            &alias,
        ])
        .args(["-j", "2", "--summary-json", "summary.json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once some rows are recorded (bounded wait). Pending lines do not count.
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = |t: String| t.lines().filter(|l| !l.contains(",pending,")).count();
    while std::fs::read_to_string(&results_path).map_or(0, finished) < 11 {
        assert!(Instant::now() < deadline, "no progress within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    let summary = read_json(&dir.path().join("summary.json"));
    assert_valid(&summary);
    assert_eq!(summary["exit_code"], 130);
    assert_eq!(summary["error"], "interrupted");
    let recorded = results(&results_path).len() as u64;
    assert!(recorded < 120, "{recorded}");
    assert_eq!(summary["counts"]["ok"], recorded);
    assert_eq!(summary["rows"], recorded);
}
