//! The SSO jobs (`set-external-id`, `remove-external-id`) and `export-users` against a real
//! Synapse. Every test makes its own accounts, with external ids that carry a unique tag, so
//! tests run in parallel (and again on the same server) without touching each other's mappings.

use std::collections::HashMap;

use crate::common::{self, Synapse, results, run_against, run_piped, synapse, unique, write};
use serde_json::{Value, json};

/// Creates `n` accounts `@<tag>-<i>`, each with the mappings `ids(i)` gives; returns their ids.
async fn accounts(
    hs: &Synapse,
    tag: &str,
    n: usize,
    ids: impl Fn(usize) -> Vec<(String, String)>,
) -> Vec<String> {
    let users: Vec<String> = (0..n)
        .map(|i| format!("@{tag}-{i}:{}", hs.server_name))
        .collect();
    for (chunk_at, chunk) in users.chunks(16).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (j, user) in chunk.iter().enumerate() {
            let external_ids: Vec<Value> = ids(chunk_at * 16 + j)
                .into_iter()
                .map(|(p, id)| json!({"auth_provider": p, "external_id": id}))
                .collect();
            let (hs, user) = (hs.clone(), user.clone());
            set.spawn(async move {
                hs.create_user(&user, json!({"external_ids": external_ids}))
                    .await
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap();
        }
    }
    users
}

fn pair(p: &str, id: &str) -> (String, String) {
    (p.to_string(), id.to_string())
}

/// The latest line of each key.
fn latest(lines: &[HashMap<String, String>]) -> HashMap<String, HashMap<String, String>> {
    lines
        .iter()
        .map(|l| (l["key"].clone(), l.clone()))
        .collect()
}

fn user_of(line: &HashMap<String, String>) -> &str {
    &line["user"]
}

#[tokio::test(flavor = "multi_thread")]
async fn migrates_210_users_to_a_new_provider_keeping_the_other_one_then_reruns_unchanged() {
    let hs = synapse("relaxed");
    let tag = unique("mig");
    let n = 210;
    let users = accounts(&hs, &tag, n, |i| {
        vec![
            pair("oidc-old", &format!("old-{tag}-{i}")),
            pair("saml-keep", &format!("keep-{tag}-{i}")),
        ]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("user,provider,external_id\n");
    for (i, user) in users.iter().enumerate() {
        // Every other row names the account by its bare localpart.
        let cell = if i % 2 == 0 {
            user.clone()
        } else {
            user[1..].split(':').next().unwrap().to_string()
        };
        input.push_str(&format!("{cell},oidc-new,new-{tag}-{i}\n"));
    }
    write(dir.path(), "mapping.csv", &input);

    let run = run_against(
        &hs,
        dir.path(),
        &[
            "set-external-id",
            "mapping.csv",
            "--drop-provider",
            "oidc-old",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("mapping.results.csv"));
    assert_eq!(lines.len(), n);
    for line in &lines {
        assert_eq!(line["status"], "ok", "{line:?}");
        assert_eq!(line["http_status"], "200");
        assert!(line["message"].starts_with("was ["), "{line:?}");
    }

    // User by user: the new mapping in, the old one out, the unrelated one kept.
    for (i, user) in users.iter().enumerate() {
        assert_eq!(
            hs.external_ids(user).await,
            vec![
                format!("oidc-new:new-{tag}-{i}"),
                format!("saml-keep:keep-{tag}-{i}")
            ],
            "{user}"
        );
    }
    // Synapse's own lookup finds each account by its new subject id, and not by the old one.
    for i in [0, n / 2, n - 1] {
        let path = format!("/_synapse/admin/v1/auth_providers/oidc-new/users/new-{tag}-{i}");
        let (status, body) = hs.call("GET", &path, None).await;
        assert_eq!((status, body["user_id"].as_str()), (200, Some(&*users[i])));
        let path = format!("/_synapse/admin/v1/auth_providers/oidc-old/users/old-{tag}-{i}");
        assert_eq!(hs.call("GET", &path, None).await.0, 404);
    }

    // The rerun finds everything done and sends no PUT.
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "set-external-id",
            "mapping.csv",
            "--drop-provider",
            "oidc-old",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("0 ok, {n} unchanged")),
        "{}",
        run.stderr
    );
    let lines = results(&dir.path().join("mapping.results.csv"));
    assert_eq!(lines.len(), 2 * n);
    assert!(lines[n..].iter().all(|l| l["status"] == "unchanged"));
    for (i, user) in users.iter().enumerate().step_by(7) {
        assert_eq!(hs.external_ids(user).await.len(), 2, "{user} #{i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sweep_of_all_users_removes_one_provider_everywhere_and_keeps_the_rest() {
    let hs = synapse("relaxed");
    let tag = unique("sweep");
    let provider = format!("oidc-{tag}");
    let users = accounts(&hs, &tag, 12, |i| {
        let mut ids = vec![pair("saml-keep", &format!("k-{tag}-{i}"))];
        if i != 11 {
            ids.push(pair(&provider, &format!("s-{i}")));
        }
        if i == 3 {
            ids.push(pair(&provider, "second-id"));
        }
        ids
    })
    .await;
    // Deactivated accounts keep their mappings; the sweep takes those too.
    let path = format!("/_synapse/admin/v1/deactivate/{}", common::enc(&users[5]));
    assert_eq!(
        hs.call("POST", &path, Some(json!({"erase": false})))
            .await
            .0,
        200
    );
    let dir = tempfile::tempdir().unwrap();

    // A destructive job with no terminal needs --yes, and changes nothing without it.
    let sweep = ["remove-external-id", "--all-users", "--provider", &provider];
    let run = run_against(&hs, dir.path(), &sweep);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(hs.external_ids(&users[0]).await.len(), 2);

    let mut with_yes = sweep.to_vec();
    with_yes.push("--yes");
    let run = run_against(&hs, dir.path(), &with_yes);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("accounts listed"), "{}", run.stderr);
    let lines = latest(&results(&dir.path().join("remove-external-id.results.csv")));
    for (i, user) in users.iter().enumerate() {
        let line = &lines[&format!("remove-external-id {user} {provider}")];
        let want = if i == 11 { "unchanged" } else { "ok" };
        assert_eq!(line["status"], want, "{line:?}");
        assert_eq!(
            hs.external_ids(user).await,
            vec![format!("saml-keep:k-{tag}-{i}")],
            "{user}"
        );
    }
    // Every account of the server had its row; ours are among them.
    assert!(lines.len() >= users.len());
    assert!(lines.values().all(|l| l["status"] != "failed"), "{lines:?}");
    // No temporary account list is left behind.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("synbatch-all-users-")
        })
        .count();
    assert!(
        leftovers <= 1,
        "{leftovers} account lists left in the temp dir"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pair_owned_by_another_account_fails_with_409_naming_the_owner() {
    let hs = synapse("relaxed");
    let tag = unique("conflict");
    let users = accounts(&hs, &tag, 2, |i| {
        vec![pair("oidc-conflict", &format!("{tag}-{i}"))]
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!(
            "user,provider,external_id\n{},oidc-conflict,{tag}-0\n",
            users[1]
        ),
    );
    let run = run_against(&hs, dir.path(), &["set-external-id", "rows.csv"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "failed");
    assert_eq!(lines[0]["http_status"], "409");
    assert!(
        lines[0]["message"].contains(&format!("already belongs to {}", users[0])),
        "{:?}",
        lines[0]
    );
    // Nothing changed on either side.
    assert_eq!(
        hs.external_ids(&users[0]).await,
        vec![format!("oidc-conflict:{tag}-0")]
    );
    assert_eq!(
        hs.external_ids(&users[1]).await,
        vec![format!("oidc-conflict:{tag}-1")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_account_is_failed_and_never_created() {
    let hs = synapse("relaxed");
    let ghost = format!("@{}:{}", unique("ghost"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "set.csv",
        &format!("user,provider,external_id\n{ghost},oidc-new,{ghost}\n"),
    );
    write(
        dir.path(),
        "remove.csv",
        &format!("user,provider\n{ghost},oidc-old\n"),
    );
    let run = run_against(&hs, dir.path(), &["set-external-id", "set.csv"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let run2 = run_against(
        &hs,
        dir.path(),
        &["remove-external-id", "remove.csv", "--yes"],
    );
    assert_eq!(run2.code, 1, "{}", run2.stderr);
    for file in ["set.results.csv", "remove.results.csv"] {
        let lines = results(&dir.path().join(file));
        assert_eq!(lines[0]["status"], "failed", "{file}");
        assert_eq!(lines[0]["http_status"], "404", "{file}");
        assert!(lines[0]["message"].contains("no such user"), "{lines:?}");
    }
    assert_eq!(hs.user(&ghost).await.0, 404, "the account must not exist");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_rows_for_one_account_all_take_effect() {
    let hs = synapse("relaxed");
    let tag = unique("many");
    let users = accounts(&hs, &tag, 2, |_| vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    // Twelve rows for the first account, interleaved with rows for the second, at -j 16: each
    // is a GET then a PUT of the whole list, so rows that overlapped would lose mappings.
    let mut input = String::from("user,provider,external_id\n");
    for p in 0..12 {
        input.push_str(&format!("{},p{p}-{tag},x{p}\n", users[0]));
        if p % 3 == 0 {
            input.push_str(&format!("{},p{p}-{tag},y{p}\n", users[1]));
        }
    }
    write(dir.path(), "rows.csv", &input);
    let run = run_against(
        &hs,
        dir.path(),
        &["set-external-id", "rows.csv", "-j", "16"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("rows.results.csv"));
    assert_eq!(lines.len(), 16);
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
    let mut want: Vec<String> = (0..12).map(|p| format!("p{p}-{tag}:x{p}")).collect();
    want.sort();
    assert_eq!(hs.external_ids(&users[0]).await, want);
    assert_eq!(hs.external_ids(&users[1]).await.len(), 4);

    // Removing one id per row, six rows for the same account: all six go.
    let mut input = String::from("user,provider,external_id\n");
    for p in 0..6 {
        input.push_str(&format!("{},p{p}-{tag},x{p}\n", users[0]));
    }
    write(dir.path(), "remove.csv", &input);
    let run = run_against(
        &hs,
        dir.path(),
        &["remove-external-id", "remove.csv", "-j", "16", "--yes"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("remove.results.csv"));
    assert!(lines.iter().all(|l| l["status"] == "ok"), "{lines:?}");
    let mut want: Vec<String> = (6..12).map(|p| format!("p{p}-{tag}:x{p}")).collect();
    want.sort();
    assert_eq!(hs.external_ids(&users[0]).await, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_shows_the_change_and_check_shows_before_after_and_failures() {
    let hs = synapse("relaxed");
    let tag = unique("dry");
    let users = accounts(&hs, &tag, 1, |_| {
        vec![
            pair("oidc-old", &format!("a-{tag}")),
            pair("saml-keep", &format!("b-{tag}")),
        ]
    })
    .await;
    let ghost = format!("@{}:{}", unique("ghost"), hs.server_name);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "rows.csv",
        &format!(
            "user,provider,external_id\n{},oidc-new,c-{tag}\n{ghost},oidc-new,g-{tag}\n",
            users[0]
        ),
    );
    let args = ["set-external-id", "rows.csv", "--drop-provider", "oidc-old"];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let run = run_against(&hs, dir.path(), &dry);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "row 1: GET then PUT /_synapse/admin/v2/users/{} external_ids: +oidc-new:c-{tag}",
            users[0]
        )),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("-every oidc-old id"), "{}", run.stdout);

    dry.push("--check");
    let run = run_against(&hs, dir.path(), &dry);
    assert_eq!(run.code, 1, "the ghost row would fail: {}", run.stderr);
    // The mappings before, in the server's order: PostgreSQL gives them in either.
    let change = |before: &str| {
        format!(
            "row 1: {}: [{before}] -> [saml-keep:b-{tag}, oidc-new:c-{tag}]",
            users[0]
        )
    };
    assert!(
        run.stdout
            .contains(&change(&format!("oidc-old:a-{tag}, saml-keep:b-{tag}")))
            || run
                .stdout
                .contains(&change(&format!("saml-keep:b-{tag}, oidc-old:a-{tag}"))),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("row 2: would fail") && run.stdout.contains("no such user"),
        "{}",
        run.stdout
    );
    assert!(!dir.path().join("rows.results.csv").exists());
    assert_eq!(
        hs.external_ids(&users[0]).await,
        vec![format!("oidc-old:a-{tag}"), format!("saml-keep:b-{tag}")]
    );
    assert_eq!(hs.user(&ghost).await.0, 404);
}

/// The server's count of accounts matching `query` (the list's `total`).
async fn total(hs: &Synapse, query: &str) -> usize {
    let (status, body) = hs
        .call(
            "GET",
            &format!("/_synapse/admin/v2/users?limit=1&{query}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["total"].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn export_pages_through_every_account_and_feeds_the_row_jobs() {
    let hs = synapse("relaxed");
    let tag = unique("exp");
    let p = format!("oidc-{tag}");
    let q = format!("saml-{tag}");
    let users = accounts(&hs, &tag, 23, |i| {
        let mut ids = vec![pair(&p, &format!("{i};odd%id"))];
        if i % 2 == 0 {
            ids.push(pair(&q, &format!("q{i}")));
        }
        ids
    })
    .await;
    let path = format!("/_synapse/admin/v1/deactivate/{}", common::enc(&users[22]));
    assert_eq!(
        hs.call("POST", &path, Some(json!({"erase": false})))
            .await
            .0,
        200
    );
    // A locked account is an account all the same: Synapse lists it only when asked.
    hs.create_user(&users[21], json!({"locked": true})).await;
    assert_eq!(total(&hs, &format!("name={tag}")).await, 21);
    let active = total(&hs, &format!("name={tag}&locked=true")).await;
    assert_eq!(active, 22);
    let dir = tempfile::tempdir().unwrap();

    // Six pages of four: every active account once, in the documented layout.
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "export-users",
            "--name",
            &tag,
            "--page-size",
            "4",
            "--with-external-ids",
            "-o",
            "users.csv",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("the server counts {active}")),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("users.csv.partial").exists());
    let rows = results(&dir.path().join("users.csv"));
    assert_eq!(rows.len(), active);
    let mut listed: Vec<&str> = rows.iter().map(|r| r["user"].as_str()).collect();
    listed.sort();
    listed.dedup();
    assert_eq!(listed.len(), active, "no account twice");
    assert!(listed.contains(&users[21].as_str()), "the locked account");
    let first = rows.iter().find(|r| r["user"] == users[0]).unwrap();
    assert_eq!(first["deactivated"], "false");
    let mut cell: Vec<&str> = first["external_ids"].split(';').collect();
    cell.sort();
    assert_eq!(cell, vec![format!("{p}:0%3Bodd%25id"), format!("{q}:q0")]);

    // --deactivated adds the deactivated account; JSON Lines, pages of five.
    let run = run_against(
        &hs,
        dir.path(),
        &[
            "export-users",
            "--name",
            &tag,
            "--deactivated",
            "--page-size",
            "5",
            "-o",
            "all.jsonl",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(dir.path().join("all.jsonl")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        total(&hs, &format!("name={tag}&deactivated=true&locked=true")).await
    );
    assert_eq!(lines.len(), 23);
    assert!(
        lines
            .iter()
            .any(|l| l["user"] == users[22] && l["deactivated"] == true)
    );

    // The export is an input: remove P from every exported account.
    let run = run_against(
        &hs,
        dir.path(),
        &["remove-external-id", "users.csv", "--provider", &p, "--yes"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let done = results(&dir.path().join("users.results.csv"));
    assert_eq!(done.len(), active);
    assert!(done.iter().all(|l| l["status"] == "ok"), "{done:?}");

    // And piped: only the accounts with a Q mapping are exported, and lose it.
    let (export, remove) = run_piped(
        &hs,
        dir.path(),
        &[
            "export-users",
            "--name",
            &tag,
            "--provider",
            &q,
            "--page-size",
            "3",
        ],
        &["remove-external-id", "-", "--provider", &q, "--yes"],
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert_eq!(remove.code, 0, "{}", remove.stderr);
    let removed = results(&dir.path().join("remove-external-id.results.csv"));
    assert_eq!(removed.len(), 11, "the even-numbered active accounts");
    assert!(removed.iter().all(|l| l["status"] == "ok"));
    for (i, user) in users.iter().enumerate() {
        let left = hs.external_ids(user).await;
        if i == 22 {
            assert_eq!(left.len(), 2, "the deactivated account was not exported");
        } else {
            assert!(left.is_empty(), "{user}: {left:?}");
        }
    }
    assert!(removed.iter().any(|l| user_of(l) == users[0]));
}
