//! `invite` and `kick` against a real Synapse, including one started with Synapse's DEFAULT
//! rate limits, where invites into one room get 429s after the first ten.

use crate::common::{self, results, run_against, synapse, write};

#[tokio::test(flavor = "multi_thread")]
async fn invite_then_kick_and_both_rerun_unchanged() {
    let hs = synapse("relaxed");
    let users = hs.users("inv", 3).await;
    let (room_id, alias) = hs.room("inv", false).await;
    let dir = tempfile::tempdir().unwrap();
    // users[2] is already a member: inviting is `unchanged`, kicking works.
    let (status, body) = hs
        .call(
            "POST",
            &format!("/_synapse/admin/v1/join/{}", common::enc(&alias)),
            Some(serde_json::json!({"user_id": users[2]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    write(
        dir.path(),
        "invite.csv",
        &format!(
            "user,room,reason\n{},{alias},welcome\n{},{room_id},\n{},{alias},\n",
            users[0], users[1], users[2]
        ),
    );
    let run = run_against(&hs, dir.path(), &["invite", "invite.csv"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("invite.results.csv"));
    let status_of = |lines: &[std::collections::HashMap<String, String>], u: &str| {
        lines.iter().rev().find(|l| l["user"] == u).unwrap()["status"].clone()
    };
    assert_eq!(status_of(&lines, &users[0]), "ok");
    assert_eq!(status_of(&lines, &users[1]), "ok");
    assert_eq!(status_of(&lines, &users[2]), "unchanged");
    assert_eq!(
        hs.membership(&room_id, &users[0]).await.as_deref(),
        Some("invite")
    );
    assert_eq!(
        hs.membership(&room_id, &users[1]).await.as_deref(),
        Some("invite")
    );

    let run = run_against(&hs, dir.path(), &["invite", "invite.csv"]);
    assert_eq!(run.code, 0);
    let lines = results(&dir.path().join("invite.results.csv"));
    assert!(
        lines[3..].iter().all(|l| l["status"] == "unchanged"),
        "{lines:?}"
    );

    // Kick: withdraws the invitations and removes the member; a second kick has nothing to do.
    write(
        dir.path(),
        "kick.csv",
        &format!("user\n{}\n{}\n", users[0], users[2]),
    );
    let run = run_against(&hs, dir.path(), &["kick", "kick.csv", "--room", &alias]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("kick.results.csv"));
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
    assert_eq!(
        hs.membership(&room_id, &users[0]).await.as_deref(),
        Some("leave")
    );
    assert_eq!(
        hs.membership(&room_id, &users[2]).await.as_deref(),
        Some("leave")
    );
    let run = run_against(&hs, dir.path(), &["kick", "kick.csv", "--room", &alias]);
    assert_eq!(run.code, 0);
    let lines = results(&dir.path().join("kick.results.csv"));
    assert!(
        lines[2..]
            .iter()
            .all(|l| l["status"] == "unchanged" && l["message"] == "not in the room")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invites_ride_through_synapse_default_rate_limits() {
    let hs = synapse("default");
    let users = hs.users("limited", 30).await;
    let (room_id, alias) = hs.room("limited", true).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "guests.csv",
        &format!("user\n{}\n", users.join("\n")),
    );
    let run = run_against(&hs, dir.path(), &["invite", "guests.csv", "--room", &alias]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("guests.results.csv"));
    assert_eq!(lines.len(), 30);
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
    let retried = lines
        .iter()
        .filter(|l| l["attempts"].parse::<u32>().unwrap() > 1)
        .count();
    assert!(
        retried > 0,
        "Synapse's default limits must have answered 429 to some invites"
    );
    for user in &users {
        assert_eq!(
            hs.membership(&room_id, user).await.as_deref(),
            Some("invite"),
            "{user}"
        );
    }
}
