//! `purge-media` and `delete-media` against a real Synapse, with media the tests upload.
//!
//! `purge-media` deletes by date across the whole server, so the tests of this file take turns
//! (one lock); no other test module uploads media.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{self, Synapse, results, run_against, synapse, write};
use serde_json::json;

static MEDIA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// When the server says it stored an item (milliseconds).
async fn created(hs: &Synapse, mxc: &str) -> i64 {
    let (status, info) = hs.media_info(mxc).await;
    assert_eq!(status, 200, "{mxc}: {info}");
    info["created_ts"].as_i64().unwrap()
}

async fn exists(hs: &Synapse, mxc: &str) -> bool {
    match hs.media_info(mxc).await.0 {
        200 => true,
        404 => false,
        other => panic!("media info {mxc}: {other}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits (bounded) until this machine's clock is past `ms`, so that "now" is after it.
async fn clock_past(ms: i64) {
    for _ in 0..500 {
        if now_ms() > ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the clock did not pass {ms}");
}

fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
}

fn deleted(dir: &std::path::Path, file: &str) -> Vec<String> {
    results(&dir.join(file))
        .into_iter()
        .map(|l| {
            assert_eq!(l["status"], "ok");
            l["media"].clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_by_date_then_by_size_keeps_profile_pictures_unless_asked() {
    let _turn = MEDIA.lock().await;
    let hs = synapse("relaxed");
    let user = hs.users("media", 1).await.remove(0);
    let token = hs.user_token(&user).await;

    let old_small = hs.upload(&token, vec![1; 20]).await;
    let avatar = hs.upload(&token, vec![2; 5000]).await;
    let path = format!("/_synapse/admin/v2/users/{}", common::enc(&user));
    let (status, body) = hs
        .call("PUT", &path, Some(json!({"avatar_url": avatar})))
        .await;
    assert_eq!(status, 200, "{body}");
    let cut = created(&hs, &avatar)
        .await
        .max(created(&hs, &old_small).await)
        + 1;
    // Uploads until one is stored after the cut (the first one almost always is).
    let mut new_small = hs.upload(&token, vec![3; 20]).await;
    for _ in 0..50 {
        if created(&hs, &new_small).await > cut {
            break;
        }
        new_small = hs.upload(&token, vec![3; 20]).await;
    }
    assert!(created(&hs, &new_small).await > cut);
    let dir = tempfile::tempdir().unwrap();

    // Seconds where milliseconds are meant: refused before anything is sent.
    let seconds = (cut / 1000).to_string();
    let run = run_against(
        &hs,
        dir.path(),
        &["purge-media", "--before", &seconds, "--yes"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("looks like seconds"), "{}", run.stderr);
    // Less than a day ago deletes nearly everything: refused without --allow-recent, before
    // anything is sent.
    let before = rfc3339(cut);
    let run = run_against(
        &hs,
        dir.path(),
        &["purge-media", "--before", &before, "--yes"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--allow-recent"), "{}", run.stderr);
    assert!(exists(&hs, &old_small).await);
    // No terminal and no --yes: refused; a dry run shows the request and sends nothing.
    let recent = ["--allow-recent"];
    let run = run_against(
        &hs,
        dir.path(),
        &["purge-media", "--before", &before, recent[0]],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    let run = run_against(
        &hs,
        dir.path(),
        &["purge-media", "--before", &before, "--dry-run", recent[0]],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "POST /_synapse/admin/v1/media/delete?before_ts={cut}&keep_profiles=true"
        )),
        "{}",
        run.stdout
    );
    assert!(exists(&hs, &old_small).await);
    // With the summary on stdout, the dry run's request goes to stderr.
    let dry = ["purge-media", "--before", &before, "--dry-run", recent[0]];
    let run = run_against(
        &hs,
        dir.path(),
        &[&dry[..], &["--summary-json", "-"]].concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summary = crate::summary_json::only_json(&run.stdout);
    crate::summary_json::assert_valid(&summary);
    assert_eq!(summary["dry_run"], true);
    assert!(
        run.stderr.contains("POST /_synapse/admin/v1/media/delete?"),
        "{}",
        run.stderr
    );

    // By date (an RFC 3339 time): the item before the cut goes; the later one and the profile
    // picture stay.
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "purge-media",
            "--before",
            &before,
            "--allow-recent",
            "--yes",
            "-o",
            "date.csv",
            "--summary-json",
            "purge.json",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gone = deleted(dir.path(), "date.csv");
    let text = std::fs::read_to_string(dir.path().join("purge.json")).unwrap();
    let summary = crate::summary_json::only_json(&text);
    crate::summary_json::assert_valid(&summary);
    assert_eq!(summary["job"], "purge-media");
    assert_eq!(summary["counts"]["ok"], gone.len() as u64);
    assert_eq!(summary["results"], "date.csv");
    assert!(gone.contains(&old_small), "{gone:?}");
    assert!(
        !gone.contains(&avatar) && !gone.contains(&new_small),
        "{gone:?}"
    );
    assert!(!exists(&hs, &old_small).await);
    assert!(exists(&hs, &new_small).await);
    assert!(exists(&hs, &avatar).await);

    // By size, up to now: only the large item that is not a profile picture goes.
    let big = hs.upload(&token, vec![4; 5000]).await;
    let small = hs.upload(&token, vec![5; 10]).await;
    clock_past(created(&hs, &big).await.max(created(&hs, &small).await)).await;
    let size = [
        "purge-media",
        "--before",
        "0s",
        "--size-gt",
        "1000",
        "--yes",
        "-o",
        "size.csv",
        "--allow-recent",
    ];
    let run = run_against(&hs, dir.path(), &size);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gone = deleted(dir.path(), "size.csv");
    assert!(gone.contains(&big), "{gone:?}");
    assert!(!exists(&hs, &big).await);
    assert!(exists(&hs, &small).await && exists(&hs, &new_small).await);
    assert!(
        exists(&hs, &avatar).await,
        "profile pictures are kept by default"
    );

    // Asked to, the profile picture goes too.
    let mut all = size.to_vec();
    all[7] = "avatars.csv";
    all.extend(["--keep-profiles", "false"]);
    let run = run_against(&hs, dir.path(), &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let gone = deleted(dir.path(), "avatars.csv");
    assert!(gone.contains(&avatar), "{gone:?}");
    assert!(!exists(&hs, &avatar).await);
    assert!(exists(&hs, &small).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_media_twice_is_ok_then_unchanged() {
    let _turn = MEDIA.lock().await;
    let hs = synapse("relaxed");
    let user = hs.users("delmedia", 1).await.remove(0);
    let token = hs.user_token(&user).await;
    let a = hs.upload(&token, b"first".to_vec()).await;
    let b = hs.upload(&token, b"second".to_vec()).await;
    let kept = hs.upload(&token, b"kept".to_vec()).await;
    let b_id = b.rsplit('/').next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "media.csv",
        &format!(
            "mxc\n{a}\n{b_id}\nmxc://elsewhere.example/abc\nmxc://{}\n",
            hs.server_name
        ),
    );
    let run = run_against(&hs, dir.path(), &["delete-media", "media.csv"]);
    assert_eq!(run.code, 2, "destructive: needs --yes: {}", run.stderr);
    assert!(exists(&hs, &a).await);

    let run = run_against(&hs, dir.path(), &["delete-media", "media.csv", "--yes"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("media.results.csv"));
    assert_eq!(lines.len(), 4);
    let row = |lines: &[std::collections::HashMap<String, String>], n: &str| {
        lines.iter().rev().find(|l| l["row"] == n).unwrap().clone()
    };
    assert_eq!(row(&lines, "1")["status"], "ok");
    assert_eq!(row(&lines, "2")["status"], "ok");
    assert_eq!(
        row(&lines, "2")["media"],
        b,
        "a bare id becomes a local mxc URI"
    );
    assert_eq!(row(&lines, "3")["status"], "invalid");
    assert!(row(&lines, "3")["message"].contains("remote"));
    assert_eq!(row(&lines, "4")["status"], "invalid");
    assert!(!exists(&hs, &a).await && !exists(&hs, &b).await);
    assert!(exists(&hs, &kept).await);

    // Again: already gone is not a failure.
    let run = run_against(&hs, dir.path(), &["delete-media", "media.csv", "--yes"]);
    assert_eq!(run.code, 1, "only the invalid rows fail: {}", run.stderr);
    let lines = results(&dir.path().join("media.results.csv"));
    assert_eq!(lines.len(), 8);
    for n in ["1", "2"] {
        let line = row(&lines, n);
        assert_eq!(line["status"], "unchanged", "{line:?}");
        assert_eq!(line["http_status"], "404");
    }
}
