//! `sync-members` and `diff-accounts` against a real Synapse: a room made to match a sheet
//! (joins, kicks, one power event), a rerun that sends nothing, the removal cap, the dry run's
//! plan against what the apply does, a room where the admin lacks power, a deactivated account,
//! a space with its child rooms, a crash mid-apply, and the accounts missing from an HR list.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{self, Synapse, enc, results, run_against, synapse, unique, write};

/// Every event of a room, newest first, through the admin messages API (bounded pages).
async fn events(hs: &Synapse, room_id: &str) -> Vec<Value> {
    let mut all = vec![];
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!(
            "/_synapse/admin/v1/rooms/{}/messages?dir=b&limit=500",
            enc(room_id)
        );
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let (status, body) = hs.call("GET", &path, None).await;
        assert_eq!(status, 200, "messages: {body}");
        let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
        if chunk.is_empty() {
            return all;
        }
        all.extend(chunk);
        match body["end"].as_str() {
            Some(end) => from = Some(end.to_string()),
            None => return all,
        }
    }
    panic!("more than 100 pages of events in {room_id}");
}

async fn count_of(hs: &Synapse, room_id: &str, kind: &str) -> usize {
    events(hs, room_id)
        .await
        .iter()
        .filter(|e| e["type"] == kind)
        .count()
}

async fn power_levels(hs: &Synapse, room_id: &str) -> Value {
    hs.room_state(room_id)
        .await
        .iter()
        .find(|e| e["type"] == "m.room.power_levels")
        .map(|e| e["content"].clone())
        .unwrap()
}

async fn join(hs: &Synapse, room: &str, user: &str) {
    let path = format!("/_synapse/admin/v1/join/{}", enc(room));
    let (status, body) = hs
        .call("POST", &path, Some(json!({ "user_id": user })))
        .await;
    assert_eq!(status, 200, "join {user}: {body}");
}

async fn admin_id(hs: &Synapse) -> String {
    let (status, body) = hs
        .call("GET", "/_matrix/client/v3/account/whoami", None)
        .await;
    assert_eq!(status, 200, "{body}");
    body["user_id"].as_str().unwrap().to_string()
}

fn set(items: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    items.into_iter().collect()
}

/// The plan file as (action, user, room, before, after, reason) rows.
fn plan(path: &Path) -> Vec<HashMap<String, String>> {
    common::all_lines(path)
}

fn changes(plan: &[HashMap<String, String>]) -> Vec<(String, String)> {
    plan.iter()
        .filter(|l| {
            ["join", "invite", "kick", "set-power", "make-room-admin"]
                .contains(&l["action"].as_str())
        })
        .map(|l| (l["action"].clone(), l["user"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_room_is_synced_to_the_sheet_and_a_rerun_sends_nothing() {
    let hs = synapse("relaxed");
    let me = admin_id(&hs).await;
    // An invite-only room: the admin join invites first, as the admin.
    let (room_id, alias) = hs.room("sync", false).await;
    let members = hs.users("member", 12).await;
    let newcomers = hs.users("new", 5).await;
    for m in &members {
        join(&hs, &room_id, m).await;
    }
    let bot = members[11].clone();
    let (stay, gone) = (&members[..8], &members[8..11]);
    let mut sheet = "user,room,power\n".to_string();
    for u in stay {
        sheet.push_str(&format!("{u},{alias},\n"));
    }
    for (i, u) in newcomers.iter().enumerate() {
        let power = if i < 2 { "moderator" } else { "" };
        sheet.push_str(&format!("{u},{alias},{power}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "staff.csv", &sheet);
    let power_events = count_of(&hs, &room_id, "m.room.power_levels").await;

    let run = run_against(
        &hs,
        dir.path(),
        &[
            "sync-members",
            "staff.csv",
            "--keep",
            &bot,
            "--reason",
            "HR sync",
            "--yes",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("{alias}: +5 \u{2212}3 power ~2")),
        "{}",
        run.stderr
    );
    let mut expected = set(stay.iter().chain(&newcomers).cloned());
    expected.insert(bot.clone());
    expected.insert(me.clone());
    assert_eq!(set(hs.members(&room_id).await), expected);
    // One power event for both moderators, every other key as it was.
    assert_eq!(
        count_of(&hs, &room_id, "m.room.power_levels").await,
        power_events + 1
    );
    let levels = power_levels(&hs, &room_id).await;
    assert_eq!(levels["users"][&newcomers[0]], 50);
    assert_eq!(levels["users"][&newcomers[1]], 50);
    assert!(levels["users"].get(&newcomers[2]).is_none(), "{levels}");
    assert_eq!(levels["kick"], 50, "{levels}");
    // The kicks carry the reason.
    let kicks: Vec<Value> = events(&hs, &room_id)
        .await
        .into_iter()
        .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "leave")
        .collect();
    assert_eq!(
        set(kicks
            .iter()
            .map(|e| e["state_key"].as_str().unwrap().to_string())),
        set(gone.iter().cloned())
    );
    assert!(kicks.iter().all(|e| e["content"]["reason"] == "HR sync"));
    let lines = results(&dir.path().join("staff.results.csv"));
    let ok: Vec<_> = lines.iter().filter(|l| l["status"] == "ok").collect();
    assert_eq!(ok.len(), 5 + 3 + 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["status"] == "ok" || l["status"] == "unchanged")
    );

    // The rerun: nothing to change, nothing sent.
    let before = events(&hs, &room_id).await.len();
    let first = lines.len();
    let run = run_against(
        &hs,
        dir.path(),
        &["sync-members", "staff.csv", "--keep", &bot],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("(0 changes)"), "{}", run.stderr);
    assert!(changes(&plan(&dir.path().join("staff.plan.csv"))).is_empty());
    let lines = results(&dir.path().join("staff.results.csv"));
    assert!(
        lines[first..].iter().all(|l| l["status"] == "unchanged"),
        "{lines:?}"
    );
    assert_eq!(events(&hs, &room_id).await.len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_removal_cap_stops_an_almost_empty_sheet_before_any_change() {
    let hs = synapse("relaxed");
    let (room_id, alias) = hs.room("cap", true).await;
    let members = hs.users("cap", 15).await;
    for m in &members {
        join(&hs, &room_id, m).await;
    }
    let newcomer = hs.users("capnew", 1).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "oops.csv",
        &format!(
            "user,room\n{},{alias}\n{},{alias}\n",
            members[0], newcomer[0]
        ),
    );
    let before = hs.members(&room_id).await;
    let run = run_against(&hs, dir.path(), &["sync-members", "oops.csv", "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("would lose 14 of its 16 members")
            && run.stderr.contains("--max-removals 14"),
        "{}",
        run.stderr
    );
    assert_eq!(hs.members(&room_id).await, before);
    assert!(!dir.path().join("oops.results.csv").exists());
    // Said so, it goes; a --keep-file member stays.
    write(
        dir.path(),
        "keep.txt",
        &format!("# service accounts\n\n{}\n", members[1]),
    );
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "sync-members",
            "oops.csv",
            "--yes",
            "--max-removals",
            "13",
            "--keep-file",
            "keep.txt",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let after = hs.members(&room_id).await;
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.contains(&members[1]) && after.contains(&newcomer[0]));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_changes_nothing_and_its_plan_is_what_the_apply_does() {
    let hs = synapse("relaxed");
    let (room_id, alias) = hs.room("dry", false).await;
    let members = hs.users("dry", 4).await;
    for m in &members {
        join(&hs, &room_id, m).await;
    }
    let newcomers = hs.users("drynew", 3).await;
    let retired = hs.users("retired", 1).await.remove(0);
    let (status, body) = hs
        .call(
            "POST",
            &format!("/_synapse/admin/v1/deactivate/{}", enc(&retired)),
            Some(json!({"erase": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // One newcomer is named by email address.
    let address = format!("{}@example.org", unique("dry-mail"));
    hs.create_user(
        &newcomers[0],
        json!({"threepids": [{"medium": "email", "address": address}]}),
    )
    .await;
    let mut sheet = format!("user,room,power\n{address},{alias},\n");
    for u in members[..2].iter().chain(&newcomers[1..]) {
        sheet.push_str(&format!("{u},{alias},\n"));
    }
    sheet.push_str(&format!("{},{alias},moderator\n", members[0]));
    sheet.push_str(&format!("{retired},{alias},\n"));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "team.csv", &sheet);
    let before_members = hs.members(&room_id).await;
    let before_events = events(&hs, &room_id).await.len();

    let run = run_against(
        &hs,
        dir.path(),
        &[
            "sync-members",
            "team.csv",
            "--dry-run",
            "--plan",
            "dry.plan.csv",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(hs.members(&room_id).await, before_members);
    assert_eq!(events(&hs, &room_id).await.len(), before_events);
    assert!(!dir.path().join("team.results.csv").exists());
    let dry = plan(&dir.path().join("dry.plan.csv"));
    let deactivated: Vec<_> = dry.iter().filter(|l| l["user"] == retired).collect();
    assert_eq!(deactivated.len(), 1, "{dry:?}");
    assert_eq!(deactivated[0]["action"], "fail");
    assert_eq!(deactivated[0]["reason"], "account is deactivated");
    let mut planned = changes(&dry);
    planned.sort();
    let mut want: Vec<(String, String)> = newcomers
        .iter()
        .map(|u| ("join".to_string(), u.clone()))
        .chain(members[2..].iter().map(|u| ("kick".to_string(), u.clone())))
        .collect();
    want.push(("set-power".into(), members[0].clone()));
    want.sort();
    assert_eq!(planned, want);

    let run = run_against(&hs, dir.path(), &["sync-members", "team.csv", "--yes"]);
    assert_eq!(run.code, 1, "the deactivated account fails: {}", run.stderr);
    let lines = results(&dir.path().join("team.results.csv"));
    let mut done: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["status"] == "ok")
        .map(|l| (l["action"].clone(), l["user"].clone()))
        .collect();
    done.sort();
    assert_eq!(done, want, "{lines:?}");
    let failed: Vec<_> = lines.iter().filter(|l| l["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["user"], retired);
    assert_eq!(failed[0]["message"], "account is deactivated");
    assert!(!hs.members(&room_id).await.contains(&retired));
}

#[tokio::test(flavor = "multi_thread")]
async fn where_the_admin_lacks_power_it_fails_with_the_hint_or_make_room_admin_fixes_it() {
    let hs = synapse("relaxed");
    let owner = hs.users("owner", 1).await.remove(0);
    let token = hs.user_token(&owner).await;
    let name = unique("owned");
    let created = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/createRoom", hs.url))
        .bearer_auth(&token)
        .json(&json!({"preset": "private_chat", "room_alias_name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let room_id = created.json::<Value>().await.unwrap()["room_id"]
        .as_str()
        .unwrap()
        .to_string();
    let alias = format!("#{name}:{}", hs.server_name);
    let guest = hs.users("guest", 1).await.remove(0);
    let invited = reqwest::Client::new()
        .post(format!(
            "{}/_matrix/client/v3/rooms/{}/invite",
            hs.url,
            enc(&room_id)
        ))
        .bearer_auth(&token)
        .json(&json!({"user_id": guest}))
        .send()
        .await
        .unwrap();
    assert_eq!(invited.status(), 200);
    let newcomer = hs.users("owned-new", 1).await.remove(0);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "owned.csv",
        &format!("user,room\n{owner},{alias}\n{newcomer},{alias}\n"),
    );
    let before = events(&hs, &room_id).await.len();
    let run = run_against(&hs, dir.path(), &["sync-members", "owned.csv", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--make-room-admin"), "{}", run.stderr);
    let lines = results(&dir.path().join("owned.results.csv"));
    let failed: Vec<_> = lines.iter().filter(|l| l["status"] == "failed").collect();
    assert_eq!(
        failed.len(),
        2,
        "the join and the withdrawn invitation: {lines:?}"
    );
    assert!(
        failed
            .iter()
            .all(|l| l["message"].contains("rerun with --make-room-admin"))
    );
    assert_eq!(
        events(&hs, &room_id).await.len(),
        before,
        "nothing was sent"
    );

    let run = run_against(
        &hs,
        dir.path(),
        &["sync-members", "owned.csv", "--yes", "--make-room-admin"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let me = admin_id(&hs).await;
    assert_eq!(
        hs.members(&room_id).await,
        set([owner.clone(), newcomer.clone(), me])
            .into_iter()
            .collect::<Vec<_>>()
    );
    let levels = power_levels(&hs, &room_id).await;
    assert_eq!(levels["users"][&admin_id(&hs).await], 100, "{levels}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_space_and_its_child_rooms_get_the_same_members() {
    let hs = synapse("relaxed");
    let (status, body) = hs
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(json!({"preset": "private_chat", "creation_content": {"type": "m.space"}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let space = body["room_id"].as_str().unwrap().to_string();
    let mut rooms = vec![space.clone()];
    for public in [true, false] {
        let (child, _) = hs.room("child", public).await;
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
            enc(&space),
            enc(&child)
        );
        let (status, body) = hs
            .call("PUT", &path, Some(json!({"via": [hs.server_name]})))
            .await;
        assert_eq!(status, 200, "{body}");
        rooms.push(child);
    }
    let old = hs.users("space-old", 2).await;
    for room in &rooms {
        join(&hs, room, &old[0]).await;
        join(&hs, room, &old[1]).await;
    }
    let team = hs.users("space-team", 3).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sheet = format!("user\n{}\n", old[0]);
    for u in &team {
        sheet.push_str(&format!("{u}\n"));
    }
    write(dir.path(), "team.csv", &sheet);
    let mut args = vec!["sync-members", "team.csv", "--yes"];
    for room in &rooms {
        args.extend(["--room", room.as_str()]);
    }
    let run = run_against(&hs, dir.path(), &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let me = admin_id(&hs).await;
    let mut want = set(team.iter().cloned());
    want.insert(old[0].clone());
    want.insert(me);
    for room in &rooms {
        assert_eq!(set(hs.members(room).await), want, "{room}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_killed_mid_apply_is_finished_by_a_rerun() {
    let hs = synapse("relaxed");
    let (room_id, alias) = hs.room("kill", true).await;
    let old = hs.users("kill-old", 30).await;
    for m in &old {
        join(&hs, &room_id, m).await;
    }
    let team = hs.users("kill-team", 60).await;
    let dir = tempfile::tempdir().unwrap();
    let sheet: String = std::iter::once("user,room,power\n".to_string())
        .chain(team.iter().enumerate().map(|(i, u)| {
            format!(
                "{u},{alias},{}\n",
                if i % 10 == 0 { "moderator" } else { "" }
            )
        }))
        .collect();
    write(dir.path(), "big.csv", &sheet);
    let args = [
        "--homeserver",
        hs.url.as_str(),
        "big.csv",
        "--yes",
        "--max-removals",
        "30",
        "-j",
        "2",
    ];
    let mut child = common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .arg("sync-members")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let results_path = dir.path().join("big.results.csv");
    // Kill once some lines are written, within bounded time.
    for _ in 0..600 {
        let lines =
            std::fs::read(&results_path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
        if lines > 20 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync ended before it could be killed mid-apply"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let mid = hs.members(&room_id).await.len();
    assert!(
        std::fs::read_to_string(&results_path)
            .unwrap()
            .contains("pending"),
        "killed before any change"
    );
    let run = run_against(
        &hs,
        dir.path(),
        &["sync-members", "big.csv", "--yes", "--max-removals", "30"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let me = admin_id(&hs).await;
    let mut want = set(team.iter().cloned());
    want.insert(me);
    assert_eq!(
        set(hs.members(&room_id).await),
        want,
        "killed with {mid} members"
    );
    let levels = power_levels(&hs, &room_id).await;
    for (i, u) in team.iter().enumerate() {
        let level = levels["users"][u].as_i64().unwrap_or(0);
        assert_eq!(level, if i % 10 == 0 { 50 } else { 0 }, "{u}");
    }
    // Every line's latest status is final: a change sent just before the kill is `ok` (the
    // room shows it), never left `pending`; nothing failed.
    let file = common::results_file(&results_path);
    let mut latest: HashMap<String, String> = HashMap::new();
    for line in &file.lines {
        latest.insert(line["key"].clone(), line["status"].clone());
    }
    let open: Vec<_> = latest
        .iter()
        .filter(|(_, s)| !["ok", "unchanged"].contains(&s.as_str()))
        .collect();
    assert!(open.is_empty(), "{open:?}");
    let kicked = latest
        .keys()
        .filter(|k| k.starts_with("sync-members kick "))
        .count();
    assert_eq!(kicked, 30, "every kick has its line");
    // And a third run has nothing left to do.
    let run = run_against(&hs, dir.path(), &["sync-members", "big.csv", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("(0 changes)"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_accounts_writes_the_accounts_missing_from_the_list_minus_the_protected() {
    let hs = synapse("relaxed");
    let staff = hs.users("hr", 300).await;
    // Of the 20 not on the list: one is an admin, one deactivated, one kept.
    let (listed, missing) = staff.split_at(280);
    let admin = &missing[0];
    let (status, body) = hs
        .call(
            "PUT",
            &format!("/_synapse/admin/v2/users/{}", enc(admin)),
            Some(json!({"admin": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let gone = &missing[1];
    let (status, body) = hs
        .call(
            "POST",
            &format!("/_synapse/admin/v1/deactivate/{}", enc(gone)),
            Some(json!({"erase": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let kept = &missing[2];
    // One person of the list is named by email.
    let by_email = &listed[0];
    let address = format!("{}@example.org", unique("hr-mail"));
    hs.create_user(
        by_email,
        json!({"threepids": [{"medium": "email", "address": address}]}),
    )
    .await;
    let mut sheet = format!("Email\n{address}\n");
    for u in &listed[1..] {
        sheet.push_str(&format!("{u}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "active.csv", &sheet);
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "diff-accounts",
            "active.csv",
            "-o",
            "leavers.csv",
            "--keep",
            kept,
            "--page-size",
            "97",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = common::all_lines(&dir.path().join("leavers.csv"));
    let written = set(out.iter().map(|l| l["user"].clone()));
    // The shared server has other tests' accounts too: they are not on this list either.
    let ours = set(staff.iter().cloned());
    let expected = set(missing[3..].iter().cloned());
    assert_eq!(set(written.intersection(&ours).cloned()), expected);
    assert!(!written.contains(&admin_id(&hs).await));
    // Nothing was deactivated.
    for u in &missing[3..] {
        assert_eq!(hs.user(u).await.1["deactivated"], false, "{u}");
    }
    // The file is a `deactivate` input (checked by its dry run), and is not overwritten.
    let run = run_against(&hs, dir.path(), &["deactivate", "leavers.csv", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = run_against(
        &hs,
        dir.path(),
        &["diff-accounts", "active.csv", "-o", "leavers.csv"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "diff-accounts",
            "active.csv",
            "-o",
            "leavers.csv",
            "--force",
            "--keep",
            kept,
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// The crash case made exact: the results file says a kick was about to be sent (`pending`)
/// and the run died; the kick had landed. The rerun's plan no longer needs it, records it `ok`
/// (this sync's work, state read back) and sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_sent_just_before_a_crash_is_recorded_ok_on_the_rerun() {
    let hs = synapse("relaxed");
    let (room_id, alias) = hs.room("crash", true).await;
    let users = hs.users("crash", 2).await;
    for u in &users {
        join(&hs, &room_id, u).await;
    }
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "one.csv",
        &format!("user,room\n{},{alias}\n", users[0]),
    );
    // What the stopped run left: its plan's kick recorded as about to be sent...
    let results_path = dir.path().join("one.results.csv");
    let header = "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,\
                  action,user,room,before,after";
    let key = format!("sync-members kick {} {alias} leave", users[1]);
    std::fs::write(
        &results_path,
        format!(
            "{header}\n2,{key},pending,,,,0,2026-11-30T00:00:00Z,0,kick,{},{alias},join,leave\n",
            users[1]
        ),
    )
    .unwrap();
    // ...and the kick itself, which landed.
    let path = format!("/_matrix/client/v3/rooms/{}/kick", enc(&room_id));
    let (status, body) = hs
        .call("POST", &path, Some(json!({"user_id": users[1]})))
        .await;
    assert_eq!(status, 200, "{body}");
    let before = events(&hs, &room_id).await.len();

    let run = run_against(&hs, dir.path(), &["sync-members", "one.csv", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("(0 changes)"), "{}", run.stderr);
    assert!(
        run.stderr.contains("1 done by the run that was stopped"),
        "{}",
        run.stderr
    );
    let lines = results(&results_path);
    let settled: Vec<_> = lines.iter().filter(|l| l["key"] == key).collect();
    assert_eq!(settled.len(), 1, "{lines:?}");
    assert_eq!(settled[0]["status"], "ok");
    assert!(
        settled[0]["message"].contains("state read back"),
        "{settled:?}"
    );
    assert_eq!(
        events(&hs, &room_id).await.len(),
        before,
        "nothing was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_row_or_an_unknown_room_stops_before_any_change() {
    let hs = synapse("relaxed");
    let (room_id, alias) = hs.room("bad", true).await;
    let users = hs.users("bad", 2).await;
    join(&hs, &room_id, &users[0]).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.csv",
        &format!(
            "user,room,power\n{},{alias},\nnot a user,{alias},\n{},{alias},boss\n",
            users[1], users[1]
        ),
    );
    let before = events(&hs, &room_id).await.len();
    let run = run_against(&hs, dir.path(), &["sync-members", "bad.csv", "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("row 2: user `not a user`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("row 3: power `boss`"), "{}", run.stderr);
    let plan = plan(&dir.path().join("bad.plan.csv"));
    assert_eq!(plan.len(), 2, "the plan lists the bad rows: {plan:?}");
    assert!(plan.iter().all(|l| l["action"] == "invalid"));
    assert_eq!(events(&hs, &room_id).await.len(), before);

    let missing = format!("#{}:{}", unique("nowhere"), hs.server_name);
    write(
        dir.path(),
        "lost.csv",
        &format!("user,room\n{},{missing}\n", users[1]),
    );
    let run = run_against(&hs, dir.path(), &["sync-members", "lost.csv", "--yes"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("room alias {missing} does not exist")),
        "{}",
        run.stderr
    );
}
