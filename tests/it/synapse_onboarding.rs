//! Onboarding and offboarding against a real Synapse: `create-users`, `deactivate`, `report`,
//! and `--dry-run --check`.

use std::collections::HashMap;

use crate::common::{self, Synapse, results, run_against, synapse, unique, write};
use serde_json::{Value, json};

/// Reads every account concurrently.
async fn accounts(hs: &Synapse, ids: &[String]) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for id in chunk {
            let (hs, id) = (hs.clone(), id.clone());
            set.spawn(async move {
                let (status, body) = hs.user(&id).await;
                (id, status, body)
            });
        }
        while let Some(done) = set.join_next().await {
            let (id, status, body) = done.unwrap();
            assert_eq!(status, 200, "{id}: {body}");
            out.insert(id, body);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_from_300_rows_then_rerun_update_and_log_in() {
    let hs = synapse("relaxed");
    let base = unique("hire");
    let (room_id, alias) = hs.room("hires", true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from(
        "User Name,Display Name,password,email,admin,user_type,provider,external_id\n",
    );
    let mut ids = vec![];
    for i in 0..300 {
        let local = format!("{base}-{i}");
        ids.push(format!("@{local}:{}", hs.server_name));
        let password = if i % 3 == 0 {
            format!("Given-pw-{i}")
        } else {
            String::new()
        };
        let email = if i % 2 == 0 {
            format!("{local}@Example.ORG")
        } else {
            String::new()
        };
        let admin = match i % 5 {
            0 => "yes",
            1 => "0",
            _ => "",
        };
        let user_type = if i % 50 == 7 { "bot" } else { "" };
        let (provider, external) = if i % 4 == 0 {
            ("oidc-hr".to_string(), format!("sub-{local}"))
        } else {
            (String::new(), String::new())
        };
        input.push_str(&format!(
            "{local},\"Hire {i}, New\",{password},{email},{admin},{user_type},{provider},{external}\n"
        ));
    }
    write(dir.path(), "hires.csv", &input);
    let passwords = dir.path().join("passwords.csv");

    let run = run_against(
        &hs,
        dir.path(),
        &[
            "create-users",
            "hires.csv",
            "--generate-passwords",
            "passwords.csv",
            "--join",
            &alias,
            "-j",
            "16",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("hires.results.csv"));
    assert_eq!(lines.len(), 300);
    assert!(
        lines
            .iter()
            .all(|l| l["status"] == "ok" && l["http_status"] == "201"),
        "{:?}",
        lines.iter().find(|l| l["status"] != "ok")
    );

    // The server has what the rows said.
    let found = accounts(&hs, &ids).await;
    for (i, id) in ids.iter().enumerate() {
        let account = &found[id];
        assert_eq!(account["displayname"], format!("Hire {i}, New"));
        assert_eq!(
            account["admin"].as_bool().unwrap_or(false),
            i % 5 == 0,
            "{id}"
        );
        let emails: Vec<&str> = account["threepids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["address"].as_str().unwrap())
            .collect();
        if i % 2 == 0 {
            assert_eq!(
                emails,
                vec![format!("{}@example.org", &id[1..id.find(':').unwrap()])]
            );
        } else {
            assert!(emails.is_empty());
        }
        let external: Vec<&Value> = account["external_ids"].as_array().unwrap().iter().collect();
        assert_eq!(
            external.len(),
            usize::from(i % 4 == 0),
            "{id}: {external:?}"
        );
        if i % 50 == 7 {
            assert_eq!(account["user_type"], "bot");
        }
    }
    let members = hs.members(&room_id).await;
    assert!(
        ids.iter().all(|id| members.contains(id)),
        "every account joined"
    );

    // Generated passwords: a private file with one line per account that had none, never
    // shown anywhere else, and they log in.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&passwords).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let generated = results(&passwords);
    assert_eq!(generated.len(), 200);
    let results_text = std::fs::read_to_string(dir.path().join("hires.results.csv")).unwrap();
    for line in &generated {
        let password = &line["password"];
        assert!(password.len() >= 20);
        assert!(!results_text.contains(password.as_str()));
        assert!(!run.stdout.contains(password.as_str()) && !run.stderr.contains(password.as_str()));
    }
    assert!(
        !results_text.contains("Given-pw-"),
        "given passwords never reach the results"
    );
    for line in generated.iter().take(3) {
        assert_eq!(
            hs.login(&line["user"], &line["password"]).await,
            200,
            "{}",
            line["user"]
        );
    }
    assert_eq!(hs.login(&ids[3], "Given-pw-3").await, 200);

    // A rerun changes nothing.
    let run = run_against(
        &hs,
        dir.path(),
        &["create-users", "hires.csv", "--join", &alias, "-j", "16"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("hires.results.csv"));
    assert_eq!(lines.len(), 600);
    assert!(lines[300..].iter().all(|l| l["status"] == "unchanged"));

    // --on-existing update changes only the columns given, only where they differ.
    let mut update = String::from("user,displayname\n");
    for (i, id) in ids.iter().enumerate() {
        let name = if i < 10 {
            format!("Renamed {i}")
        } else {
            format!("Hire {i}, New")
        };
        update.push_str(&format!("{id},\"{name}\"\n"));
    }
    write(dir.path(), "update.csv", &update);
    let run = run_against(
        &hs,
        dir.path(),
        &["create-users", "update.csv", "--on-existing", "update"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("update.results.csv"));
    assert_eq!(lines.iter().filter(|l| l["status"] == "ok").count(), 10);
    assert_eq!(
        lines.iter().filter(|l| l["status"] == "unchanged").count(),
        290
    );
    let renamed = accounts(&hs, &ids[..12]).await;
    assert_eq!(renamed[&ids[0]]["displayname"], "Renamed 0");
    assert_eq!(renamed[&ids[11]]["displayname"], "Hire 11, New");
    // The update kept what it was not asked to change.
    assert_eq!(
        renamed[&ids[0]]["external_ids"].as_array().unwrap().len(),
        1
    );
    assert_eq!(hs.login(&ids[3], "Given-pw-3").await, 200);

    // --on-existing fail refuses an existing account.
    write(dir.path(), "one.csv", &format!("user\n{}\n", ids[1]));
    let run = run_against(
        &hs,
        dir.path(),
        &["create-users", "one.csv", "--on-existing", "fail"],
    );
    assert_eq!(run.code, 1);
    let lines = results(&dir.path().join("one.results.csv"));
    assert_eq!(lines[0]["status"], "failed");
    assert!(lines[0]["message"].contains("exists already"));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_users_reports_a_taken_sso_mapping_and_bad_rows() {
    let hs = synapse("relaxed");
    let owner = format!("@{}:{}", unique("owner"), hs.server_name);
    let sub = unique("sub");
    hs.create_user(
        &owner,
        json!({"external_ids": [{"auth_provider": "oidc-hr", "external_id": sub}]}),
    )
    .await;
    let newcomer = format!("@{}:{}", unique("new"), hs.server_name);
    let bob = unique("bob");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!(
            "user,provider,external_id,admin\n{newcomer},oidc-hr,{sub},\n@x:elsewhere.org,,,\n{bob},oidc-hr,,\ncarol,,,maybe\nsomeone@example.org,,,\n"
        ),
    );
    let run = run_against(&hs, dir.path(), &["create-users", "rows.csv"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    let row = |n: &str| lines.iter().find(|l| l["row"] == n).unwrap();
    assert_eq!(row("1")["status"], "failed");
    assert_eq!(row("1")["http_status"], "409");
    assert!(
        row("1")["message"].contains("WITHOUT its SSO mapping"),
        "{:?}",
        row("1")
    );
    assert!(
        row("1")["message"].contains(&owner),
        "names the owner: {:?}",
        row("1")
    );
    let (status, account) = hs.user(&newcomer).await;
    assert_eq!(status, 200, "Synapse creates the account anyway");
    assert!(account["external_ids"].as_array().unwrap().is_empty());
    assert_eq!(row("2")["status"], "invalid");
    assert!(row("2")["message"].contains("only manages local accounts"));
    assert_eq!(row("3")["status"], "invalid");
    assert!(row("3")["message"].contains("without an external_id"));
    assert_eq!(row("4")["status"], "invalid");
    assert!(row("4")["message"].contains("admin `maybe`"));
    assert_eq!(row("5")["status"], "invalid");
    assert!(row("5")["message"].contains("email address"));
    assert_eq!(
        hs.user(&format!("@{bob}:{}", hs.server_name)).await.0,
        404,
        "invalid rows send nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_of_create_users_creates_nothing_and_hides_passwords() {
    let hs = synapse("relaxed");
    let local = unique("dry");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!("user,password\n{local},Secret-Pw-1\n"),
    );
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "create-users",
            "rows.csv",
            "--dry-run",
            "--generate-passwords",
            "pw.csv",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("PUT /_synapse/admin/v2/users/@"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("<hidden>") && !run.stdout.contains("Secret-Pw-1"),
        "{}",
        run.stdout
    );
    assert!(!dir.path().join("rows.results.csv").exists());
    assert!(!dir.path().join("pw.csv").exists());
    assert_eq!(
        hs.user(&format!("@{local}:{}", hs.server_name)).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivate_with_and_without_erase_twice() {
    let hs = synapse("relaxed");
    let users = hs.users("leaver", 2).await;
    let ghost = format!("@{}:{}", unique("ghost"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "leavers.csv",
        &format!("user,erase\n{},\n{},yes\n{ghost},\n", users[0], users[1]),
    );

    // No terminal to confirm on, no --yes: refused before anything is sent.
    let run = run_against(&hs, dir.path(), &["deactivate", "leavers.csv"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(hs.user(&users[0]).await.1["deactivated"], false);

    let run = run_against(&hs, dir.path(), &["deactivate", "leavers.csv", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("leavers.results.csv"));
    let by_user = |u: &str| lines.iter().rev().find(|l| l["user"] == u).unwrap().clone();
    assert_eq!(by_user(&users[0])["status"], "ok");
    assert_eq!(by_user(&users[0])["erase"], "false");
    assert_eq!(by_user(&users[1])["status"], "ok");
    assert_eq!(by_user(&users[1])["erase"], "true");
    assert_eq!(by_user(&ghost)["status"], "failed");
    assert!(by_user(&ghost)["message"].contains("no such user"));
    assert_eq!(hs.user(&ghost).await.0, 404, "deactivate never creates");
    let first = hs.user(&users[0]).await.1;
    assert_eq!(first["deactivated"], true);
    assert_eq!(first["erased"], false);
    let second = hs.user(&users[1]).await.1;
    assert_eq!(second["deactivated"], true);
    assert_eq!(second["erased"], true);

    // Twice: nothing more to do. With --erase for every row, the first user is now erased too.
    let run = run_against(&hs, dir.path(), &["deactivate", "leavers.csv", "--yes"]);
    assert_eq!(run.code, 1);
    let lines = results(&dir.path().join("leavers.results.csv"));
    assert_eq!(
        lines[3..]
            .iter()
            .filter(|l| l["status"] == "unchanged")
            .count(),
        2
    );
    write(dir.path(), "first.csv", &format!("user\n{}\n", users[0]));
    let run = run_against(
        &hs,
        dir.path(),
        &["deactivate", "first.csv", "--yes", "--erase"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        results(&dir.path().join("first.results.csv"))[0]["status"],
        "ok"
    );
    assert_eq!(hs.user(&users[0]).await.1["erased"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_failed_rows_feed_back_as_input() {
    let hs = synapse("relaxed");
    let users = hs.users("rep", 2).await;
    let (room_id, alias) = hs.room("rep", true).await;
    let late = format!("@{}:{}", unique("late"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!(
            "user,room\n{},{alias}\n{late},{alias}\n{},{alias}\nnot a user,{alias}\n",
            users[0], users[1]
        ),
    );
    let run = run_against(&hs, dir.path(), &["join", "rows.csv"]);
    assert_eq!(run.code, 1);

    let output = common::synbatch()
        .current_dir(dir.path())
        .args(["report", "rows.results.csv", "--failed", "retry.csv"])
        .output()
        .unwrap();
    let report = common::finish(output, None);
    assert_eq!(report.code, 1, "a failed row remains: {}", report.stderr);
    assert!(report.stdout.contains("M_NOT_FOUND"), "{}", report.stdout);
    assert!(
        report.stdout.contains("synbatch join retry.csv"),
        "{}",
        report.stdout
    );
    let retry = std::fs::read_to_string(dir.path().join("retry.csv")).unwrap();
    assert_eq!(retry, format!("user,room\n{late},{alias}\n"));

    hs.create_user(&late, json!({})).await;
    let run = run_against(&hs, dir.path(), &["join", "retry.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(hs.members(&room_id).await.contains(&late));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_the_rows_that_would_fail() {
    let hs = synapse("relaxed");
    let users = hs.users("chk", 2).await;
    let (pub_id, pub_alias) = hs.room("chk-pub", true).await;
    // A private room the admin is not in: made by an ordinary user.
    let owner_token = hs.user_token(&users[1]).await;
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/createRoom", hs.url))
        .bearer_auth(&owner_token)
        .json(&json!({"preset": "private_chat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let private: Value = response.json().await.unwrap();
    let private_id = private["room_id"].as_str().unwrap().to_string();
    let ghost = format!("@{}:{}", unique("ghost"), hs.server_name);
    let missing = format!("#{}:{}", unique("nowhere"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!(
            "user,room\n{},{pub_alias}\n{ghost},{pub_alias}\n{},{missing}\n{},{private_id}\n",
            users[0], users[0], users[0]
        ),
    );
    let before = hs.members(&pub_id).await;
    let run = run_against(
        &hs,
        dir.path(),
        &["join", "rows.csv", "--dry-run", "--check"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("row 2: would fail: join {ghost}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("no account {ghost}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("room alias {missing} does not exist")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("row 4: would fail") && run.stdout.contains("power to invite"),
        "{}",
        run.stdout
    );
    assert!(
        !run.stdout.contains("row 1:"),
        "the good row passes: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("1 rows would run, 3 would fail"),
        "{}",
        run.stderr
    );
    assert_eq!(hs.members(&pub_id).await, before, "a check changes nothing");
    assert!(!dir.path().join("rows.results.csv").exists());
}

/// Deactivated and locked accounts exist: `create-users` must not write over them, whether it
/// learns of them from the account list (which shows them only when asked) or per row.
#[tokio::test(flavor = "multi_thread")]
async fn create_users_leaves_deactivated_and_locked_accounts_alone() {
    let hs = synapse("relaxed");
    let gone = format!("@{}:{}", unique("gone"), hs.server_name);
    let locked = format!("@{}:{}", unique("locked"), hs.server_name);
    for id in [&gone, &locked] {
        hs.create_user(
            id,
            json!({"displayname": "Before", "password": "Before-pw-1234"}),
        )
        .await;
    }
    let path = format!("/_synapse/admin/v1/deactivate/{}", common::enc(&gone));
    assert_eq!(hs.call("POST", &path, Some(json!({}))).await.0, 200);
    hs.create_user(&locked, json!({"locked": true})).await;
    let before = accounts(&hs, &[gone.clone(), locked.clone()]).await;
    let fresh = format!("@{}:{}", unique("fresh"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hires.csv",
        &format!(
            "user,displayname,password\n{gone},After,After-pw-1234\n{locked},After,After-pw-1234\n{fresh},After,After-pw-1234\n"
        ),
    );
    let run = run_against(&hs, dir.path(), &["create-users", "hires.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("hires.results.csv"));
    let status = |id: &str| lines.iter().find(|l| l["user"] == id).unwrap()["status"].clone();
    assert_eq!(status(&gone), "unchanged", "{lines:?}");
    assert_eq!(status(&locked), "unchanged", "{lines:?}");
    assert_eq!(status(&fresh), "ok", "{lines:?}");
    let after = accounts(&hs, &[gone.clone(), locked.clone()]).await;
    assert_eq!(before, after, "not written over");
    assert_eq!(after[&locked]["locked"], json!(true));
    assert_eq!(after[&gone]["deactivated"], json!(true));
}
