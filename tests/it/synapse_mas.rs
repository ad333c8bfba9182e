//! Every job against a real Synapse that delegates authentication to MAS (the harness's `mas`
//! profile: Synapse trusts a stand-in for MAS's token introspection; accounts are made with
//! `POST /_synapse/mas/provision_user`, as MAS makes them). A job either works there, or stops
//! before its first row with exit 2 and a message that sends the admin to MAS.
//!
//! The jobs come from `synbatch --help` (clap's own list of subcommands), so a job added later
//! fails the sweep until it has a case here.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::common::{Synapse, enc, results, run_against, synapse, synbatch, write};

/// The subcommands `synbatch --help` lists, less `help`.
fn jobs() -> Vec<String> {
    let output = synbatch().arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists its commands");
    commands
        .lines()
        .take_while(|l| !l.trim().is_empty())
        // A name is indented by two; a wrapped description by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|name| name != "help")
        .collect()
}

/// The MAS refusal: exit 2, what to use instead, and nothing sent or written.
fn assert_refused(run: &crate::common::Run, job: &str, dir: &Path) {
    assert_eq!(run.code, 2, "{job}: {}", run.stderr);
    for needle in [
        "Matrix Authentication Service (MAS)",
        "mas-cli",
        "Nothing was sent",
    ] {
        assert!(run.stderr.contains(needle), "{job}: {}", run.stderr);
    }
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("results") || name.contains("password"))
        .collect();
    assert!(left.is_empty(), "{job} left {left:?}");
}

/// Every final line of a results file is `ok`.
fn all_ok(dir: &Path, file: &str) {
    let lines = results(&dir.join(file));
    assert!(!lines.is_empty(), "{file} is empty");
    assert!(
        lines.iter().all(|l| l["status"] == "ok"),
        "{file}: {lines:?}"
    );
}

async fn media_gone(hs: &Synapse, mxc: &str) -> bool {
    match hs.media_info(mxc).await.0 {
        200 => false,
        404 => true,
        other => panic!("media info {mxc}: {other}"),
    }
}

/// Waits (bounded) until this machine's clock is a millisecond past the item's `created_ts`.
async fn clock_past_creation(hs: &Synapse, mxc: &str) {
    let (status, info) = hs.media_info(mxc).await;
    assert_eq!(status, 200, "{info}");
    let created = info["created_ts"].as_i64().unwrap();
    for _ in 0..500 {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now.as_millis() as i64 > created {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the clock did not pass {created}");
}

/// One small real case of `job` against the MAS-delegating server.
async fn case(hs: &Synapse, job: &str, dir: &Path) {
    match job {
        "join" => {
            let users = hs.users("mas-join", 2).await;
            let (room_id, alias) = hs.room("mas-join", true).await;
            let rows = format!("user,room\n{},{alias}\n{},{room_id}\n", users[0], users[1]);
            write(dir, "join.csv", &rows);
            let run = run_against(hs, dir, &["join", "join.csv"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "join.results.csv");
            let members = hs.members(&room_id).await;
            assert!(users.iter().all(|u| members.contains(u)), "{members:?}");
        }
        "invite" => {
            let users = hs.users("mas-invite", 1).await;
            let (room_id, alias) = hs.room("mas-invite", false).await;
            write(
                dir,
                "invite.csv",
                &format!("user,room\n{},{alias}\n", users[0]),
            );
            let run = run_against(hs, dir, &["invite", "invite.csv"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "invite.results.csv");
            let now = hs.membership(&room_id, &users[0]).await;
            assert_eq!(now.as_deref(), Some("invite"));
        }
        "kick" => {
            let users = hs.users("mas-kick", 1).await;
            let (room_id, alias) = hs.room("mas-kick", true).await;
            let path = format!("/_synapse/admin/v1/join/{}", enc(&alias));
            let (status, body) = hs
                .call("POST", &path, Some(json!({"user_id": users[0]})))
                .await;
            assert_eq!(status, 200, "{body}");
            write(dir, "kick.csv", &format!("user\n{}\n", users[0]));
            let run = run_against(hs, dir, &["kick", "kick.csv", "--room", &alias]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "kick.results.csv");
            let now = hs.membership(&room_id, &users[0]).await;
            assert_eq!(now.as_deref(), Some("leave"));
        }
        "export-users" => {
            // The account list under MAS only answers `guests=false`: with or without
            // --guests, synbatch must ask for exactly that.
            let users = hs.users("mas-export", 1).await;
            for (file, extra) in [("all.csv", None), ("guests.csv", Some("--guests"))] {
                let mut args = vec!["export-users", "-o", file];
                args.extend(extra);
                let run = run_against(hs, dir, &args);
                assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
                let text = std::fs::read_to_string(dir.join(file)).unwrap();
                assert!(text.contains(&users[0]), "{file}: {text}");
                assert!(text.contains("@admin:"), "{file}: {text}");
                if extra.is_some() {
                    assert!(run.stderr.contains("no guest accounts"), "{}", run.stderr);
                }
            }
        }
        "set-external-id" => {
            let users = hs.users("mas-sso", 1).await;
            let sub = crate::common::unique("sub");
            let rows = format!("user,provider,external_id\n{},oidc-mas,{sub}\n", users[0]);
            write(dir, "map.csv", &rows);
            let run = run_against(hs, dir, &["set-external-id", "map.csv"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "map.results.csv");
            let want = format!("oidc-mas:{sub}");
            assert_eq!(hs.external_ids(&users[0]).await, [want]);
        }
        "remove-external-id" => {
            // --all-users walks the account list, which under MAS needs `guests=false`.
            let users = hs.users("mas-unmap", 2).await;
            let provider = crate::common::unique("oidc-gone");
            for (i, user) in users.iter().enumerate() {
                let path = format!("/_synapse/admin/v2/users/{}", enc(user));
                let ids = json!({"external_ids": [
                    {"auth_provider": provider, "external_id": format!("sub-{i}")},
                    {"auth_provider": "oidc-kept", "external_id": format!("{provider}-{i}")},
                ]});
                let (status, body) = hs.call("PUT", &path, Some(ids)).await;
                assert_eq!(status, 200, "{body}");
            }
            let args = [
                "remove-external-id",
                "--all-users",
                "--provider",
                &provider,
                "--yes",
                "-o",
                "unmap.csv",
            ];
            let run = run_against(hs, dir, &args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            for (i, user) in users.iter().enumerate() {
                let kept = format!("oidc-kept:{provider}-{i}");
                assert_eq!(hs.external_ids(user).await, [kept]);
            }
        }
        "deactivate" => {
            let users = hs.users("mas-leave", 1).await;
            write(dir, "leavers.csv", &format!("user\n{}\n", users[0]));
            let run = run_against(hs, dir, &["deactivate", "leavers.csv", "--yes"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "leavers.results.csv");
            let (status, account) = hs.user(&users[0]).await;
            assert_eq!(status, 200, "{account}");
            assert_eq!(account["deactivated"], true, "{account}");
        }
        "delete-media" => {
            let users = hs.users("mas-media", 1).await;
            let token = hs.user_token(&users[0]).await;
            let mxc = hs.upload(&token, vec![1; 64]).await;
            write(dir, "media.csv", &format!("media\n{mxc}\n"));
            let run = run_against(hs, dir, &["delete-media", "media.csv", "--yes"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "media.results.csv");
            assert!(media_gone(hs, &mxc).await);
        }
        "purge-media" => {
            let users = hs.users("mas-purge", 1).await;
            let token = hs.user_token(&users[0]).await;
            let mxc = hs.upload(&token, vec![2; 64]).await;
            clock_past_creation(hs, &mxc).await;
            let args = [
                "purge-media",
                "--before",
                "0s",
                "--allow-recent",
                "--yes",
                "-o",
                "purge.csv",
            ];
            let run = run_against(hs, dir, &args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            assert!(media_gone(hs, &mxc).await);
        }
        "create-users" => {
            // New accounts, and updates of existing ones, both refused before the first row.
            let existing = hs.users("mas-old", 1).await;
            let new = format!("@{}:{}", crate::common::unique("mas-new"), hs.server_name);
            let rows = format!(
                "user,displayname,password\n{new},New,Pw-new-12345\n{},Renamed,\n",
                existing[0]
            );
            write(dir, "hires.csv", &rows);
            for extra in [
                vec![],
                vec!["--on-existing", "update"],
                vec!["--generate-passwords", "passwords.csv"],
                vec!["--dry-run"],
                vec!["--dry-run", "--check"],
            ] {
                let mut args = vec!["create-users", "hires.csv"];
                args.extend(extra);
                let run = run_against(hs, dir, &args);
                assert_refused(&run, &format!("{args:?}"), dir);
            }
            assert_eq!(hs.user(&new).await.0, 404, "{new} was created");
            let (_, account) = hs.user(&existing[0]).await;
            assert_ne!(account["displayname"], "Renamed", "{account}");
        }
        "sync-members" => {
            // Reads the room's state, joins through the admin API, kicks through the
            // Client-Server API as the token's user: all served under MAS.
            let users = hs.users("mas-sync", 3).await;
            let (room_id, alias) = hs.room("mas-sync", false).await;
            for user in &users[..2] {
                let path = format!("/_synapse/admin/v1/join/{}", enc(&room_id));
                let (status, body) = hs.call("POST", &path, Some(json!({"user_id": user}))).await;
                assert_eq!(status, 200, "{body}");
            }
            write(
                dir,
                "staff.csv",
                &format!("user\n{}\n{}\n", users[1], users[2]),
            );
            let args = ["sync-members", "staff.csv", "--room", &alias, "--yes"];
            let run = run_against(hs, dir, &args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            let states = [
                hs.membership(&room_id, &users[0]).await,
                hs.membership(&room_id, &users[1]).await,
                hs.membership(&room_id, &users[2]).await,
            ];
            let want = ["leave", "join", "join"].map(|s| Some(s.to_string()));
            assert_eq!(states, want);
        }
        "diff-accounts" => {
            let users = hs.users("mas-diff", 2).await;
            write(dir, "hr.csv", &format!("user\n{}\n", users[0]));
            let args = ["diff-accounts", "hr.csv", "-o", "leavers.csv"];
            let run = run_against(hs, dir, &args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            let text = std::fs::read_to_string(dir.join("leavers.csv")).unwrap();
            assert!(text.contains(&users[1]), "{text}");
            assert!(!text.contains(&users[0]), "{text}");
            assert!(!text.contains("@admin:"), "{text}");
        }
        "create-rooms" => {
            // createRoom as the token's user: a MAS-introspected token on the Client-Server API.
            let alias = crate::common::unique("mas-new-room");
            write(dir, "rooms.csv", &format!("alias,name\n{alias},New room\n"));
            let run = run_against(hs, dir, &["create-rooms", "rooms.csv"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "rooms.results.csv");
            let full = format!("#{alias}:{}", hs.server_name);
            let path = format!("/_matrix/client/v3/directory/room/{}", enc(&full));
            let (status, body) = hs.call("GET", &path, None).await;
            assert_eq!(status, 200, "{body}");
        }
        "delete-rooms" => {
            let (room_id, _) = hs.room("mas-gone", true).await;
            write(dir, "gone.csv", &format!("room\n{room_id}\n"));
            let run = run_against(hs, dir, &["delete-rooms", "gone.csv", "--yes"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "gone.results.csv");
            let path = format!("/_synapse/admin/v1/rooms/{}", enc(&room_id));
            let (status, body) = hs.call("GET", &path, None).await;
            assert_eq!(status, 404, "{body}");
        }
        "notify" => {
            // Sent, then found in the user's notices room by the rerun (not sent twice).
            let users = hs.users("mas-notice", 1).await;
            write(dir, "notice.csv", &format!("user\n{}\n", users[0]));
            let args = ["notify", "notice.csv", "--message", "Hello {user}"];
            let run = run_against(hs, dir, &args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            all_ok(dir, "notice.results.csv");
            std::fs::remove_file(dir.join("notice.results.csv")).unwrap();
            let run = run_against(hs, dir, &args);
            assert_eq!(run.code, 0, "{}", run.stderr);
            let lines = results(&dir.join("notice.results.csv"));
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert_eq!(lines[0]["status"], "unchanged", "{lines:?}");
        }
        "report" => {
            // Needs no server: it reads a results file made against this one.
            let users = hs.users("mas-report", 1).await;
            let (_, alias) = hs.room("mas-report", true).await;
            write(dir, "r.csv", &format!("user,room\n{},{alias}\n", users[0]));
            let run = run_against(hs, dir, &["join", "r.csv"]);
            assert_eq!(run.code, 0, "{}", run.stderr);
            let output = synbatch()
                .current_dir(dir)
                .args(["report", "r.results.csv"])
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{out}");
            assert!(out.contains("ok"), "{out}");
        }
        other => panic!(
            "no MAS case for `{other}`: add one to tests/it/synapse_mas.rs (it works against \
             the mas profile, or stops before its first row: then give it `refused_under_mas`)"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_job_works_under_mas_or_stops_before_its_first_row() {
    let hs = synapse("mas");
    let jobs = jobs();
    assert!(jobs.len() >= 11, "too few jobs found in --help: {jobs:?}");
    for job in &jobs {
        let dir = tempfile::tempdir().unwrap();
        case(&hs, job, dir.path()).await;
    }
}

/// Under MAS the admin check cannot use `/users/<id>/admin` (Synapse does not serve it); a
/// token without the admin scope is still told apart.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_without_the_admin_scope_is_refused_under_mas() {
    let hs = synapse("mas");
    let users = hs.users("mas-plain", 1).await;
    let (_, alias) = hs.room("mas-plain", true).await;
    let plain = Synapse {
        admin_token: hs.user_token(&users[0]).await,
        ..hs.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!("user,room\n{},{alias}\n", users[0]),
    );
    let run = run_against(&plain, dir.path(), &["join", "rows.csv"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not a server admin"), "{}", run.stderr);
    assert!(!dir.path().join("rows.results.csv").exists());
}
