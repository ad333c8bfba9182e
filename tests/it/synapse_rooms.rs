//! `delete-rooms` (and `create-rooms`) against the real Synapse: rooms with members and
//! messages deleted, blocked and moved; a run killed while a delete runs, resumed without a
//! second DELETE (counted by a pass-through proxy).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chaos_proxy::{ChaosProxy, Config};
use crate::common::{self, Synapse, enc, results, run_against, synapse, write};

/// Sends a text message into a room as `user` (its own token).
async fn say(hs: &Synapse, user: &str, room_id: &str, text: &str) {
    let token = hs.user_token(user).await;
    let txn = common::unique("txn");
    let url = format!(
        "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
        hs.url,
        enc(room_id)
    );
    let answer = reqwest::Client::new()
        .put(url)
        .bearer_auth(&token)
        .json(&json!({"msgtype": "m.text", "body": text}))
        .send()
        .await
        .expect("test Synapse answers");
    assert_eq!(answer.status().as_u16(), 200, "{user} says {text}");
}

/// A public room with `members` joined (admin join) and a message from each.
async fn busy_room(hs: &Synapse, prefix: &str, members: &[String]) -> (String, String) {
    let (room_id, alias) = hs.room(prefix, true).await;
    for user in members {
        let path = format!("/_synapse/admin/v1/join/{}", enc(&room_id));
        let (status, body) = hs.call("POST", &path, Some(json!({"user_id": user}))).await;
        assert_eq!(status, 200, "join {user}: {body}");
        say(hs, user, &room_id, &format!("hello from {user}")).await;
    }
    (room_id, alias)
}

async fn room_exists(hs: &Synapse, room_id: &str) -> bool {
    let (status, body) = hs
        .call(
            "GET",
            &format!("/_synapse/admin/v1/rooms/{}", enc(room_id)),
            None,
        )
        .await;
    assert!(
        status == 200 || status == 404,
        "room {room_id}: {status} {body}"
    );
    status == 200
}

async fn resolve(hs: &Synapse, alias: &str) -> Option<String> {
    let path = format!("/_matrix/client/v3/directory/room/{}", enc(alias));
    let (status, body) = hs.call("GET", &path, None).await;
    (status == 200).then(|| body["room_id"].as_str().unwrap().to_string())
}

fn by_room<'a>(
    lines: &'a [std::collections::HashMap<String, String>],
    room: &str,
) -> &'a std::collections::HashMap<String, String> {
    let mut found = lines.iter().filter(|l| l["room"] == room);
    let line = found
        .next()
        .unwrap_or_else(|| panic!("no line for {room}: {lines:?}"));
    assert!(
        found.next().is_none(),
        "one final line for {room}: {lines:?}"
    );
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_rooms_removes_blocks_and_moves_members_and_a_rerun_changes_nothing() {
    let hs = synapse("relaxed");
    let users = hs.users("del", 4).await;
    let boss = hs.users("boss", 1).await.remove(0);
    let (purged_id, purged_alias) = busy_room(&hs, "del-purge", &users[..2]).await;
    let (blocked_id, _) = busy_room(&hs, "del-block", &users[1..3]).await;
    let (moved_id, moved_alias) = busy_room(&hs, "del-move", &users[2..]).await;
    let never = format!("#{}:{}", common::unique("never"), hs.server_name);

    let dir = tempfile::tempdir().unwrap();
    let sheet = format!(
        "room,block,new_room_user_id\n{purged_alias},,\n{blocked_id},yes,\n{moved_alias},,{boss}\n"
    );
    write(dir.path(), "rooms.csv", &sheet);
    let run = run_against(&hs, dir.path(), &["delete-rooms", "rooms.csv", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("rooms.results.csv"));
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (room, id) in [
        (&purged_alias, &purged_id),
        (&blocked_id, &blocked_id),
        (&moved_alias, &moved_id),
    ] {
        let line = by_room(&lines, room);
        assert_eq!(line["status"], "ok", "{line:?}");
        assert_eq!(
            &line["room_id"], id,
            "the results keep the room id: {line:?}"
        );
        assert!(!line["delete_id"].is_empty(), "{line:?}");
        assert!(!room_exists(&hs, id).await, "{room} is gone");
    }
    // The delete id was recorded before the run waited for it.
    let all = common::all_lines(&dir.path().join("rooms.results.csv"));
    for id in [&purged_id, &blocked_id, &moved_id] {
        let delete_id = &all.iter().find(|l| &l["room_id"] == id).unwrap()["delete_id"];
        assert!(
            all.iter()
                .any(|l| l["status"] == "pending" && l["message"].contains(delete_id.as_str())),
            "a pending line with delete_id {delete_id}: {all:?}"
        );
    }

    // Blocked: nobody can join the id again.
    let (status, body) = hs
        .call(
            "GET",
            &format!("/_synapse/admin/v1/rooms/{}/block", enc(&blocked_id)),
            None,
        )
        .await;
    assert_eq!((status, &body["block"]), (200, &json!(true)), "{body}");
    let path = format!("/_synapse/admin/v1/join/{}", enc(&blocked_id));
    let (status, body) = hs
        .call("POST", &path, Some(json!({"user_id": users[0]})))
        .await;
    assert_ne!(status, 200, "joining a blocked room: {body}");
    let token = hs.user_token(&users[0]).await;
    let join = reqwest::Client::new()
        .post(format!(
            "{}/_matrix/client/v3/join/{}",
            hs.url,
            enc(&blocked_id)
        ))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(join.status().as_u16(), 403, "a user joins the blocked id");
    // The purged room's alias went with it; the moved room's alias now names the new room,
    // where its members were moved.
    assert_eq!(resolve(&hs, &purged_alias).await, None);
    let new_room = resolve(&hs, &moved_alias)
        .await
        .expect("the alias moved to the new room");
    assert_ne!(new_room, moved_id);
    let members = hs.members(&new_room).await;
    for user in &users[2..] {
        assert!(
            members.contains(user),
            "{user} moved to {new_room}: {members:?}"
        );
    }
    assert!(members.contains(&boss), "{members:?}");

    // A rerun: the aliases no longer name the deleted rooms (one is gone, one names the new
    // room), the recorded ids do: all unchanged, and the new room is left alone. An alias that
    // never resolved is failed.
    let sheet = format!("{sheet}{never},,\n");
    write(dir.path(), "rooms.csv", &sheet);
    let run = run_against(&hs, dir.path(), &["delete-rooms", "rooms.csv", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("rooms.results.csv"));
    let rerun = &lines[3..];
    assert_eq!(rerun.len(), 4, "{lines:?}");
    for room in [&purged_alias, &blocked_id, &moved_alias] {
        let line = by_room(rerun, room);
        assert_eq!(line["status"], "unchanged", "{line:?}");
    }
    let line = by_room(rerun, &never);
    assert_eq!(line["status"], "failed", "{line:?}");
    assert!(line["message"].contains("does not exist"), "{line:?}");
    assert!(
        room_exists(&hs, &new_room).await,
        "the rerun left the new room alone"
    );

    // Blocking a room already deleted is all that is left to do: the block alone.
    write(
        dir.path(),
        "block.csv",
        &format!("room,block\n{purged_id},yes\n"),
    );
    let run = run_against(&hs, dir.path(), &["delete-rooms", "block.csv", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = &results(&dir.path().join("block.results.csv"))[0];
    assert_eq!(line["status"], "ok", "{line:?}");
    assert!(line["message"].contains("blocked"), "{line:?}");
    let block = format!("/_synapse/admin/v1/rooms/{}/block", enc(&purged_id));
    let (_, body) = hs.call("GET", &block, None).await;
    assert_eq!(body["block"], json!(true), "{body}");
    let run = run_against(&hs, dir.path(), &["delete-rooms", "block.csv", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = &results(&dir.path().join("block.results.csv"))[1];
    assert_eq!(line["status"], "unchanged", "{line:?}");
}

/// DELETE requests the proxy saw for a room.
fn deletes_of(proxy: &ChaosProxy, room_id: &str) -> usize {
    let path = format!("/_synapse/admin/v2/rooms/{room_id}");
    proxy
        .records()
        .iter()
        .filter(|r| r.method == "DELETE" && r.path == path)
        .count()
}

fn wait_for_line(results: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(results).is_ok_and(|text| text.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_while_a_delete_runs_is_resumed_without_a_second_delete() {
    let hs = synapse("relaxed");
    let users = hs.users("kill-del", 12).await;
    let (room_id, alias) = busy_room(&hs, "kill-del", &users).await;
    let proxy = ChaosProxy::start(&hs.url, Config::new(1, 0.0, Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rooms.csv", &format!("room\n{alias}\n"));
    let results_path = dir.path().join("rooms.results.csv");

    let mut child = common::synbatch()
        .current_dir(dir.path())
        .env("SYNBATCH_TOKEN", &hs.admin_token)
        .args([
            "delete-rooms",
            "--homeserver",
            &proxy.url,
            "rooms.csv",
            "--yes",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let recorded = wait_for_line(&results_path, ": delete_id ", Duration::from_secs(60));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    assert!(recorded, "the delete's id was recorded before the wait");
    let status = format!("/_synapse/admin/v2/rooms/{}/delete_status", enc(&room_id));
    let (_, at_kill) = hs.call("GET", &status, None).await;
    eprintln!(
        "delete status at the kill: {}",
        at_kill["results"][0]["status"]
    );
    let before: Vec<Value> = common::all_lines(&results_path)
        .iter()
        .map(|l| json!(l))
        .collect();
    assert!(
        before.iter().all(|l| l["status"] == "pending"),
        "killed while waiting: only pending lines {before:?}"
    );
    // The proxy records a request once its answer is relayed: let it catch up.
    assert!(proxy.settle(Duration::from_secs(10)));
    assert_eq!(deletes_of(&proxy, &room_id), 1, "{}", proxy.trace("rooms"));

    let run = common::run_via(
        &hs,
        &proxy.url,
        dir.path(),
        &["delete-rooms", "rooms.csv", "--yes", "--resume"],
        Duration::from_secs(120),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        deletes_of(&proxy, &room_id),
        1,
        "no second DELETE:\n{}",
        proxy.trace("rooms")
    );
    let lines = results(&results_path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["status"], "ok", "{:?}", lines[0]);
    assert_eq!(lines[0]["room_id"], room_id);
    let message_id = before
        .iter()
        .filter_map(|l| l["message"].as_str())
        .find_map(|m| m.split("delete_id ").nth(1))
        .map(|rest| rest.split(',').next().unwrap().to_string());
    assert_eq!(
        Some(lines[0]["delete_id"].clone()),
        message_id,
        "the recorded delete was waited for"
    );
    assert!(!room_exists(&hs, &room_id).await);
    // The resumed run read the delete's status rather than starting another.
    let statuses = proxy
        .records()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("delete_status"))
        .count();
    assert!(statuses >= 1, "{}", proxy.trace("delete_status"));
}

/// A room's current state events as (type, state_key) -> content.
async fn state_of(
    hs: &Synapse,
    room_id: &str,
) -> std::collections::HashMap<(String, String), Value> {
    hs.room_state(room_id)
        .await
        .iter()
        .map(|e| {
            let key = (
                e["type"].as_str().unwrap().to_string(),
                e["state_key"].as_str().unwrap_or("").to_string(),
            );
            (key, e["content"].clone())
        })
        .collect()
}

async fn listed(hs: &Synapse, room_id: &str) -> bool {
    let path = format!("/_matrix/client/v3/directory/list/room/{}", enc(room_id));
    let (status, body) = hs.call("GET", &path, None).await;
    assert_eq!(status, 200, "{body}");
    body["visibility"] == "public"
}

fn key(kind: &str, state_key: &str) -> (String, String) {
    (kind.to_string(), state_key.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn create_rooms_makes_a_space_before_its_rooms_and_a_rerun_changes_nothing() {
    let hs = synapse("relaxed");
    let p = common::unique("dept");
    let sheet = |topic: &str| {
        format!(
            "alias,name,topic,preset,directory,encrypted,space,is_space\n\
             {p}-enc,Encrypted room,Secret things,private,,yes,{p}-space,\n\
             {p}-pub,Public room,{topic},public,yes,,#{p}-space:{server},\n\
             {p}-priv,Private room,Quiet,,,,,\n\
             #{p}-space:{server},Department,The department,public,,,,yes\n",
            server = hs.server_name
        )
    };
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rooms.csv", &sheet("Open to all"));
    let run = run_against(&hs, dir.path(), &["create-rooms", "rooms.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let path = dir.path().join("rooms.results.csv");
    let lines = results(&path);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0]["alias"].contains("-space:"),
        "the space first: {lines:?}"
    );
    let id = |suffix: &str| {
        let alias = format!("#{p}-{suffix}:{}", hs.server_name);
        let line = by_alias(&lines, &alias);
        assert_eq!(line["status"], "ok", "{line:?}");
        assert!(line["room_id"].starts_with('!'), "{line:?}");
        line["room_id"].clone()
    };
    let (space, enc_room, public, private) = (id("space"), id("enc"), id("pub"), id("priv"));
    for (alias, room) in [
        ("space", &space),
        ("enc", &enc_room),
        ("pub", &public),
        ("priv", &private),
    ] {
        let alias = format!("#{p}-{alias}:{}", hs.server_name);
        assert_eq!(resolve(&hs, &alias).await.as_ref(), Some(room), "{alias}");
    }

    let s = state_of(&hs, &space).await;
    assert_eq!(s[&key("m.room.create", "")]["type"], "m.space");
    assert_eq!(s[&key("m.room.join_rules", "")]["join_rule"], "public");
    for child in [&enc_room, &public] {
        let via = &s[&key("m.space.child", child)]["via"];
        assert_eq!(via, &json!([hs.server_name]), "child {child}");
    }
    assert!(!s.contains_key(&key("m.space.child", &private)));

    let s = state_of(&hs, &enc_room).await;
    assert_eq!(
        s[&key("m.room.encryption", "")]["algorithm"],
        "m.megolm.v1.aes-sha2"
    );
    assert_eq!(s[&key("m.room.join_rules", "")]["join_rule"], "invite");
    assert_eq!(s[&key("m.space.parent", &space)]["canonical"], true);
    assert_eq!(s[&key("m.room.name", "")]["name"], "Encrypted room");
    assert!(!listed(&hs, &enc_room).await);

    let s = state_of(&hs, &public).await;
    assert_eq!(s[&key("m.room.join_rules", "")]["join_rule"], "public");
    assert!(!s.contains_key(&key("m.room.encryption", "")));
    assert!(s.contains_key(&key("m.space.parent", &space)));
    assert!(listed(&hs, &public).await, "published in the directory");

    let s = state_of(&hs, &private).await;
    assert_eq!(
        s[&key("m.room.join_rules", "")]["join_rule"],
        "invite",
        "blank preset: private"
    );
    assert!(!s.keys().any(|(kind, _)| kind == "m.space.parent"));
    assert_eq!(s[&key("m.room.topic", "")]["topic"], "Quiet");
    assert!(!listed(&hs, &private).await);

    // The rerun: every alias exists as the sheet says. Its two passes (the space, then the
    // rooms) are one run for --summary-json.
    let args = ["create-rooms", "rooms.csv", "--summary-json", "run.json"];
    let run = run_against(&hs, dir.path(), &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).unwrap())
            .unwrap();
    assert_eq!(summary["rows"], 4, "{summary}");
    assert_eq!(summary["counts"]["unchanged"], 4, "{summary}");
    assert_eq!(summary["exit_code"], 0, "{summary}");
    let rerun = &results(&path)[4..];
    assert_eq!(rerun.len(), 4, "{rerun:?}");
    assert!(
        rerun.iter().all(|l| l["status"] == "unchanged"),
        "{rerun:?}"
    );
    assert!(
        rerun.iter().all(|l| l["room_id"].starts_with('!')),
        "{rerun:?}"
    );

    // One topic changed: --on-existing update changes exactly that.
    write(dir.path(), "rooms.csv", &sheet("Open to everyone"));
    let run = run_against(
        &hs,
        dir.path(),
        &["create-rooms", "rooms.csv", "--on-existing", "update"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let update = &results(&path)[8..];
    assert_eq!(update.len(), 4, "{update:?}");
    for line in update {
        let want = if line["room_id"] == public {
            "ok"
        } else {
            "unchanged"
        };
        assert_eq!(line["status"], want, "{line:?}");
    }
    let line = update.iter().find(|l| l["room_id"] == public).unwrap();
    assert_eq!(line["message"], "changed: topic", "{line:?}");
    let s = state_of(&hs, &public).await;
    assert_eq!(s[&key("m.room.topic", "")]["topic"], "Open to everyone");
    assert_eq!(s[&key("m.room.name", "")]["name"], "Public room");
    assert!(listed(&hs, &public).await);
}

fn by_alias<'a>(
    lines: &'a [std::collections::HashMap<String, String>],
    alias: &str,
) -> &'a std::collections::HashMap<String, String> {
    lines
        .iter()
        .find(|l| l["alias"] == alias)
        .unwrap_or_else(|| panic!("no line for {alias}: {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_that_runs_out_leaves_the_row_pending_and_resume_finishes_it() {
    let hs = synapse("relaxed");
    let users = hs.users("wait-del", 12).await;
    let (room_id, alias) = busy_room(&hs, "wait-del", &users).await;
    let proxy = ChaosProxy::start(&hs.url, Config::new(2, 0.0, Duration::from_secs(30)));
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rooms.csv", &format!("room\n{alias}\n"));
    let limit = Duration::from_secs(120);
    // Twelve members to remove take Synapse far longer than a millisecond.
    let args = ["delete-rooms", "rooms.csv", "--yes", "--wait", "0.001"];
    let run = common::run_via(&hs, &proxy.url, dir.path(), &args, limit);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--resume"), "{}", run.stderr);
    let path = dir.path().join("rooms.results.csv");
    let lines = common::all_lines(&path);
    let last = lines.last().unwrap();
    assert_eq!(
        last["status"], "pending",
        "a wait that ran out is no failure: {lines:?}"
    );
    assert!(last["message"].contains("--resume"), "{last:?}");
    assert_eq!(last["room_id"], room_id);
    let delete_id = last["delete_id"].clone();
    assert!(!delete_id.is_empty(), "{last:?}");

    let args = ["delete-rooms", "rooms.csv", "--yes", "--resume"];
    let run = common::run_via(&hs, &proxy.url, dir.path(), &args, limit);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let last = common::all_lines(&path).pop().unwrap();
    assert_eq!(last["status"], "ok", "{last:?}");
    assert_eq!(
        last["delete_id"], delete_id,
        "the same delete was waited for"
    );
    assert!(proxy.settle(Duration::from_secs(10)));
    assert_eq!(deletes_of(&proxy, &room_id), 1, "{}", proxy.trace("rooms"));
    assert!(!room_exists(&hs, &room_id).await);
}

/// A Synapse whose `room_list_publication_rules` refuse (its default) answers the listing with
/// 403: mocked, since the harness allows publication on every profile.
#[tokio::test]
async fn a_refused_directory_listing_is_failed_and_names_the_config_key() {
    use wiremock::matchers::{method, path, path_regex};
    use wiremock::{Mock, ResponseTemplate};
    let server = common::mock_admin_homeserver().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/_matrix/client/v3/directory/room/"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"errcode": "M_NOT_FOUND", "error": "Room alias not found"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/_matrix/client/v3/createRoom"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"room_id": "!new"})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/_matrix/client/v3/directory/list/room/!new"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"errcode": "M_FORBIDDEN", "error": "Not allowed to publish room"}),
        ))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rooms.csv", "alias,directory\nlobby,yes\n");
    let (url, at) = (server.uri(), dir.path().to_path_buf());
    let run = tokio::task::spawn_blocking(move || {
        let output = common::synbatch()
            .current_dir(&at)
            .env("SYNBATCH_TOKEN", "mock-admin-token")
            .args(["create-rooms", "rooms.csv", "--homeserver", &url])
            .output()
            .unwrap();
        common::finish(output, Some("mock-admin-token"))
    })
    .await
    .unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let line = &results(&dir.path().join("rooms.results.csv"))[0];
    assert_eq!(line["status"], "failed", "{line:?}");
    assert_eq!(line["room_id"], "!new", "{line:?}");
    assert!(
        line["message"].contains("room_list_publication_rules"),
        "{line:?}"
    );
    assert!(line["message"].contains("was created"), "{line:?}");
    // The failed row, as a new input, still asks for the listing.
    let output = common::synbatch()
        .current_dir(dir.path())
        .args(["report", "rooms.results.csv", "--failed", "retry.csv"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let retry = results(&dir.path().join("retry.csv"));
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(retry[0]["alias"], "#lobby:mock.test");
    assert_eq!(retry[0]["directory"], "true");
}

/// A delete someone else started (without purge) is waited for, then this row's own purge is
/// sent: a running delete is never doubled, and what it left decides what is still to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_delete_running_from_elsewhere_is_waited_for_then_what_is_left_is_done() {
    let hs = synapse("relaxed");
    let users = hs.users("other-del", 12).await;
    let (room_id, _) = busy_room(&hs, "other-del", &users).await;
    let proxy = ChaosProxy::start(&hs.url, Config::new(3, 0.0, Duration::from_secs(30)));
    let path = format!("/_synapse/admin/v2/rooms/{}", enc(&room_id));
    let (status, body) = hs
        .call("DELETE", &path, Some(json!({"purge": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rooms.csv", &format!("room\n{room_id}\n"));
    let args = ["delete-rooms", "rooms.csv", "--yes"];
    let run = common::run_via(&hs, &proxy.url, dir.path(), &args, Duration::from_secs(120));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = &results(&dir.path().join("rooms.results.csv"))[0];
    assert_eq!(line["status"], "ok", "{line:?}");
    assert!(proxy.settle(Duration::from_secs(10)));
    // The other delete kept the room (no purge): this row purged it, with one DELETE of its own.
    assert_eq!(deletes_of(&proxy, &room_id), 1, "{}", proxy.trace("rooms"));
    assert!(!room_exists(&hs, &room_id).await);
    assert_ne!(
        line["delete_id"],
        body["delete_id"].as_str().unwrap(),
        "{line:?}"
    );
}
