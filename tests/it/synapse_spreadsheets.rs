//! The files admins really get, against a real Synapse: an .xlsx and an .ods written in the
//! test, Excel's Windows-1252 "CSV" and its UTF-16 "Unicode text", and an HR export
//! (`Employee ID,Name,Email`). Each runs a real `create-users` and a `join`, checked account by
//! account on the server.

use std::path::Path;

use crate::common::{Synapse, results, run_against, synapse, unique, write};
use crate::workbooks::{self, Value as V, text};

/// One person of the HR export: a unique localpart and how HR spells them.
struct Person {
    localpart: String,
    name: String,
    email: String,
}

fn people(prefix: &str, names: &[&str]) -> Vec<Person> {
    let base = unique(prefix);
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let localpart = format!("{base}-{i}");
            Person {
                // HR writes addresses in any case; the localpart is lowercased.
                email: format!("{}@Example.ORG", localpart.to_uppercase()),
                localpart,
                name: name.to_string(),
            }
        })
        .collect()
}

fn id(hs: &Synapse, p: &Person) -> String {
    format!("@{}:{}", p.localpart, hs.server_name)
}

/// The account on the server: its display name and email addresses.
async fn account(hs: &Synapse, user: &str) -> (String, Vec<String>) {
    let (status, body) = hs.user(user).await;
    assert_eq!(status, 200, "{user}: {body}");
    let emails = body["threepids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["address"].as_str().map(String::from))
        .collect();
    (
        body["displayname"].as_str().unwrap_or_default().to_string(),
        emails,
    )
}

/// Every person has an account with their name and (lowercased) email, and is in the room.
async fn check_accounts_and_room(hs: &Synapse, people: &[Person], room_id: &str) {
    let members = hs.members(room_id).await;
    for p in people {
        let user = id(hs, p);
        let (name, emails) = account(hs, &user).await;
        assert_eq!(name, p.name, "{user}");
        assert_eq!(emails, vec![p.email.to_lowercase()], "{user}");
        assert!(members.contains(&user), "{user} joined: {members:?}");
    }
}

fn hr_rows(people: &[Person]) -> Vec<Vec<V>> {
    let mut rows = vec![vec![
        text("Employee ID"),
        text("Name"),
        text("Email"),
        text("deactivated"),
    ]];
    for (i, p) in people.iter().enumerate() {
        rows.push(vec![
            V::Number(1000.0 + i as f64),
            text(&p.name),
            text(&p.email),
            V::Bool(false),
        ]);
        if i == 0 {
            // A blank row between people, as sheets have.
            rows.push(vec![V::Empty, V::Empty, V::Empty, V::Empty]);
        }
    }
    rows
}

/// create-users --localpart-from email, then join by email (resolved on the server), both
/// from the same workbook.
async fn onboard_from_workbook(hs: &Synapse, dir: &Path, file: &str, people: &[Person]) {
    let (room_id, alias) = hs.room("sheet", true).await;
    let run = run_against(
        hs,
        dir,
        &[
            "create-users",
            file,
            "--localpart-from",
            "email",
            "--sheet",
            "Staff",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("column `deactivated`") && run.stderr.contains("does not use"),
        "one note for the ignored known column: {}",
        run.stderr
    );
    let stem = file.split('.').next().unwrap();
    let lines = results(&dir.join(format!("{stem}.results.csv")));
    assert_eq!(lines.len(), people.len());
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");

    let run = run_against(
        hs,
        dir,
        &[
            "join",
            file,
            "--room",
            &alias,
            "-o",
            "join.csv",
            "--annotate",
            "back.xlsx",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The sheet back for HR: its own cells as it shows them (1000, not 1000.0), the status,
    // the account each email resolved to, and where the row is in the sheet.
    let back = workbooks::read_xlsx(&dir.join("back.xlsx"));
    assert_eq!(
        back[0],
        [
            "Employee ID",
            "Name",
            "Email",
            "deactivated",
            "status",
            "message",
            "resolved_user",
            "sheet_row"
        ]
    );
    assert_eq!(back.len(), people.len() + 1);
    for (i, (row, p)) in back[1..].iter().zip(people).enumerate() {
        let sheet_row = if i == 0 { 2 } else { i + 3 };
        let want = [
            (1000 + i).to_string(),
            p.name.clone(),
            p.email.clone(),
            "false".into(),
            "ok".into(),
            String::new(),
            id(hs, p),
            sheet_row.to_string(),
        ];
        assert_eq!(row, &want);
    }
    let lines = results(&dir.join("join.csv"));
    assert_eq!(lines.len(), people.len());
    for p in people {
        // The email names the user; the server's lookup finds the account.
        let line = lines
            .iter()
            .find(|l| l["user"] == p.email.to_lowercase())
            .unwrap_or_else(|| panic!("{} joined by email: {lines:?}", p.email));
        assert_eq!(line["status"], "ok");
    }
    check_accounts_and_room(hs, people, &room_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn xlsx_hr_export_onboards_and_joins() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("xlsx", &["José Müller", "Ann O'Neil", "李 华"]);
    let path = dir.path().join("hr.xlsx");
    workbooks::write_xlsx(&path, "Staff", &hr_rows(&staff), Some("Leavers"));
    onboard_from_workbook(&hs, dir.path(), "hr.xlsx", &staff).await;

    // A sheet that is not there: exit 2, naming the sheets, nothing sent.
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "hr.xlsx", "--sheet", "Nope", "--room", "#x:y"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no sheet `Nope`") && run.stderr.contains("`Staff`, `Leavers`"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ods_hr_export_onboards_and_joins() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("ods", &["Zoë Çelik", "Bob & Co <b>"]);
    workbooks::write_ods(&dir.path().join("hr.ods"), "Staff", &hr_rows(&staff));
    onboard_from_workbook(&hs, dir.path(), "hr.ods", &staff).await;
}

/// Bytes as Excel's default "CSV" writes them on Windows: Windows-1252, CRLF.
fn windows_1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            'é' => 0xe9,
            'ü' => 0xfc,
            'ö' => 0xf6,
            'Ö' => 0xd6,
            c if c.is_ascii() => c as u8,
            c => panic!("{c} not in the test's table"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_1252_csv_sends_nothing_until_its_encoding_is_named() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("cp1252", &["Ascii Only", "José Müller", "Jörg Öz"]);
    let mut csv = String::from("user,displayname,email\r\n");
    for p in &staff {
        csv.push_str(&format!("{},{},{}\r\n", p.localpart, p.name, p.email));
    }
    std::fs::write(dir.path().join("staff.csv"), windows_1252(&csv)).unwrap();

    let run = run_against(&hs, dir.path(), &["create-users", "staff.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("not UTF-8")
            && run.stderr.contains("Windows-1252")
            && run.stderr.contains("--encoding windows-1252"),
        "{}",
        run.stderr
    );
    // Not even the ASCII row before the first bad byte was sent.
    for p in &staff {
        let (status, _) = hs.user(&id(&hs, p)).await;
        assert_eq!(status, 404, "{} must not exist", p.localpart);
    }
    assert!(!dir.path().join("staff.results.csv").exists());

    let run = run_against(
        &hs,
        dir.path(),
        &["create-users", "staff.csv", "--encoding", "windows-1252"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (room_id, alias) = hs.room("cp1252", false).await;
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "join",
            "staff.csv",
            "--encoding",
            "windows-1252",
            "--room",
            &alias,
            "-o",
            "j.csv",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    check_accounts_and_room(&hs, &staff, &room_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn excel_unicode_text_utf16_tsv_onboards_and_joins() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("utf16", &["José Müller", "Ελένη"]);
    let (room_id, alias) = hs.room("utf16", true).await;
    // Excel's "Unicode text": UTF-16LE with a BOM, tab-separated, CRLF, saved as .txt.
    let mut tsv = String::from("User\tDisplay Name\tE-mail\tRoom\r\n");
    for p in &staff {
        tsv.push_str(&format!(
            "{}\t{}\t{}\t{alias}\r\n",
            p.localpart, p.name, p.email
        ));
    }
    let mut bytes = vec![0xff, 0xfe];
    bytes.extend(tsv.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(dir.path().join("staff.txt"), bytes).unwrap();

    let run = run_against(
        &hs,
        dir.path(),
        &["create-users", "staff.txt", "-o", "c.csv"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = run_against(&hs, dir.path(), &["join", "staff.txt", "-o", "j.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    check_accounts_and_room(&hs, &staff, &room_id).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hr_csv_with_email_only_and_a_localpart_that_cannot_be() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("hrcsv", &["Ann Lee", "Bo Chen"]);
    let mut csv = String::from("Employee ID,Name,Email\n");
    for (i, p) in staff.iter().enumerate() {
        csv.push_str(&format!("{},{},{}\n", 7 + i, p.name, p.email));
    }
    // An address whose local part is no Matrix localpart: invalid, the others still run.
    csv.push_str("9,José,josé@example.org\n");
    write(dir.path(), "hr.csv", &csv);
    let run = run_against(
        &hs,
        dir.path(),
        &["create-users", "hr.csv", "--localpart-from", "email"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("hr.results.csv"));
    let invalid: Vec<_> = lines.iter().filter(|l| l["status"] == "invalid").collect();
    assert_eq!(invalid.len(), 1, "{lines:?}");
    assert_eq!(invalid[0]["row"], "3");
    assert!(
        invalid[0]["message"].contains("user") && invalid[0]["message"].contains("josé"),
        "{:?}",
        invalid[0]
    );
    for p in &staff {
        let (name, emails) = account(&hs, &id(&hs, p)).await;
        assert_eq!(
            (name, emails),
            (p.name.clone(), vec![p.email.to_lowercase()])
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn same_header_twice_is_refused_and_bad_cells_stay_short() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let users = hs.users("cells", 1).await;
    let (room_id, alias) = hs.room("cells", true).await;

    write(
        dir.path(),
        "dup.csv",
        &format!("user,room,User\n{},{alias},x\n", users[0]),
    );
    let run = run_against(&hs, dir.path(), &["join", "dup.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("(`user`) and 3 (`User`)"),
        "{}",
        run.stderr
    );
    assert!(hs.members(&room_id).await.iter().all(|m| m != &users[0]));

    // A 50 MB cell, a NUL and an ESC in identifiers: invalid rows, quoted short, escaped on
    // the terminal; the good row still runs.
    let giant = "a".repeat(50 * 1024 * 1024);
    let input = format!(
        "user,room\n{giant},{alias}\n@nul\u{0}:x,{alias}\n@esc\u{1b}[2J:x,{alias}\n{},{alias}\n",
        users[0]
    );
    write(dir.path(), "cells.csv", &input);
    let run = run_against(&hs, dir.path(), &["join", "cells.csv", "-v"]);
    assert_eq!(run.code, 1, "{}", &run.stderr[..run.stderr.len().min(2000)]);
    assert!(
        run.stderr.len() < 10_000,
        "stderr is {} bytes",
        run.stderr.len()
    );
    assert!(!run.stderr.contains('\u{1b}') && !run.stderr.contains('\u{0}'));
    let results_path = dir.path().join("cells.results.csv");
    let size = std::fs::metadata(&results_path).unwrap().len();
    assert!(size < 10_000, "results file is {size} bytes");
    let lines = results(&results_path);
    let mut status: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["row"].as_str(), l["status"].as_str()))
        .collect();
    status.sort();
    assert_eq!(
        status,
        vec![
            ("1", "invalid"),
            ("2", "invalid"),
            ("3", "invalid"),
            ("4", "ok")
        ]
    );
    assert!(lines.iter().any(|l| l["message"].contains("U+0000")));
    assert!(lines.iter().any(|l| l["message"].contains("U+001B")));
    assert!(hs.members(&room_id).await.contains(&users[0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn report_failed_with_input_keeps_every_column_and_the_password_privately() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("refail", &["Ann Lee", "Bo Chen", "Cy Diaz"]);
    // Bo's account exists already: with --on-existing fail, their row fails.
    hs.create_user(&id(&hs, &staff[1]), serde_json::json!({}))
        .await;
    let mut csv = String::from("Employee ID,Name,Email,password,Dept\n");
    for (i, p) in staff.iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{},Pw-{i}-secret,D{i}\n",
            10 + i,
            p.name,
            p.email
        ));
    }
    write(dir.path(), "hr.csv", &csv);
    let create = [
        "create-users",
        "hr.csv",
        "--localpart-from",
        "email",
        "--on-existing",
        "fail",
    ];
    let run = run_against(&hs, dir.path(), &create);
    assert_eq!(run.code, 1, "{}", run.stderr);

    let report = |extra: &[&str]| {
        let out = crate::common::synbatch()
            .current_dir(dir.path())
            .args(["report", "hr.results.csv", "--failed", "retry.csv"])
            .args(extra)
            .output()
            .unwrap();
        crate::common::finish(out, None)
    };
    let r = report(&["--input", "hr.csv"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("password column") && r.stderr.contains("0600"),
        "{}",
        r.stderr
    );
    let retry = std::fs::read_to_string(dir.path().join("retry.csv")).unwrap();
    assert_eq!(
        retry,
        format!(
            "Employee ID,Name,Email,password,Dept\n11,{},{},Pw-1-secret,D1\n",
            staff[1].name, staff[1].email
        )
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("retry.csv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Never replaced without --force; without --input, the password is said to be lost.
    let r = report(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    let r = report(&["--force"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("holds no passwords"), "{}", r.stderr);
    let r = report(&["--force", "--input", "hr.csv"]);
    assert_eq!(r.code, 1, "{}", r.stderr);

    // The rerun from OUT gives Bo the password the sheet had.
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "create-users",
            "retry.csv",
            "--localpart-from",
            "email",
            "--on-existing",
            "update",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(hs.login(&id(&hs, &staff[1]), "Pw-1-secret").await, 200);
    let (name, emails) = account(&hs, &id(&hs, &staff[1])).await;
    assert_eq!(
        (name, emails),
        (staff[1].name.clone(), vec![staff[1].email.to_lowercase()])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_utf8_stdin_sends_nothing() {
    let hs = synapse("relaxed");
    let dir = tempfile::tempdir().unwrap();
    let staff = people("stdin1252", &["Plain", "José Müller"]);
    let mut csv = String::from("user,displayname\n");
    for p in &staff {
        csv.push_str(&format!("{},{}\n", p.localpart, p.name));
    }
    let mut child = crate::common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .args(["create-users", "--homeserver", &hs.url, "-", "-o", "r.csv"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&windows_1252(&csv)).unwrap();
    }
    let run = crate::common::finish(child.wait_with_output().unwrap(), Some(&hs.admin_token));
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("<stdin>") && run.stderr.contains("not UTF-8"),
        "{}",
        run.stderr
    );
    for p in &staff {
        assert_eq!(
            hs.user(&id(&hs, p)).await.0,
            404,
            "{} must not exist",
            p.localpart
        );
    }
}

/// A server's error text with terminal control sequences in it reaches the terminal escaped.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_a_server_error_are_escaped_on_the_terminal() {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let server = crate::common::mock_admin_homeserver().await;
    Mock::given(method("POST"))
        .and(path_regex("^/_synapse/admin/v1/join/.*"))
        .respond_with(ResponseTemplate::new(403).set_body_json(serde_json::json!({
            "errcode": "M_FORBIDDEN",
            "error": "no\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m entry"
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "j.csv",
        "user,room\n@a:mock.test,!r:mock.test\n",
    );
    let out = crate::common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", "mock-token")
        .args([
            "join",
            "j.csv",
            "-v",
            "--retries",
            "0",
            "--homeserver",
            &server.uri(),
        ])
        .output()
        .unwrap();
    let run = crate::common::finish(out, Some("mock-token"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("no\\u{1b}[2J"), "{}", run.stderr);
    for c in ['\u{1b}', '\u{7}', '\u{9b}'] {
        assert!(
            !run.stderr.contains(c) && !run.stdout.contains(c),
            "{c:?}: {}",
            run.stderr
        );
    }
}
