//! Changes that landed while their answers were lost, from stateful mock servers on 127.0.0.1:
//! a 502 after the change was made, a success whose body is not JSON, a run killed after it
//! recorded its intent. The row must say what happened on the server: `ok`, read back, never
//! `unchanged` or `failed`. (The same against a real Synapse behind a chaos proxy is in
//! synapse_chaos.rs.)

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{self, all_lines, finish, results, synbatch, write};

const TOKEN: &str = "syt_mock_token_do_not_print";
const USER: &str = "@u:mock.test";
const USER_PATH: &str = "/_synapse/admin/v2/users/@u:mock.test";

/// One account, as the admin API shows it, kept between requests.
#[derive(Clone)]
struct Account(Arc<Mutex<Value>>);

impl Account {
    fn new(deactivated: bool, external_ids: Value) -> Account {
        Account(Arc::new(Mutex::new(json!({
            "name": USER,
            "deactivated": deactivated,
            "erased": false,
            "admin": false,
            "threepids": [],
            "external_ids": external_ids,
        }))))
    }

    fn get(&self) -> Value {
        self.0.lock().unwrap().clone()
    }
}

impl Respond for Account {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(self.get())
    }
}

/// Makes the change, then answers as a broken proxy or a torn connection would.
struct LandsThen<F: Fn(&mut Value, &Value) + Send + Sync> {
    account: Account,
    change: F,
    answer: ResponseTemplate,
}

impl<F: Fn(&mut Value, &Value) + Send + Sync> Respond for LandsThen<F> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        (self.change)(&mut self.account.0.lock().unwrap(), &body);
        self.answer.clone()
    }
}

async fn run(server: &MockServer, dir: &std::path::Path, args: &[&str]) -> common::Run {
    let (url, dir) = (server.uri(), dir.to_path_buf());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let output = synbatch()
            .current_dir(&dir)
            .env("SYNBATCH_TOKEN", TOKEN)
            .args(&args)
            .args(["--homeserver", &url, "--yes"])
            .output()
            .unwrap();
        finish(output, Some(TOKEN))
    })
    .await
    .unwrap()
}

fn bad_gateway() -> ResponseTemplate {
    ResponseTemplate::new(502).set_body_string("<html>502 Bad Gateway</html>")
}

#[tokio::test(flavor = "multi_thread")]
async fn deactivation_whose_answer_was_lost_is_ok_not_already_deactivated() {
    let server = common::mock_admin_homeserver().await;
    let account = Account::new(false, json!([]));
    Mock::given(method("GET"))
        .and(path(USER_PATH))
        .respond_with(account.clone())
        .mount(&server)
        .await;
    let lands = LandsThen {
        account: account.clone(),
        change: |a: &mut Value, _: &Value| a["deactivated"] = json!(true),
        answer: bad_gateway(),
    };
    Mock::given(method("POST"))
        .and(path("/_synapse/admin/v1/deactivate/@u:mock.test"))
        .respond_with(lands)
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "leavers.csv", &format!("user\n{USER}\n"));
    let run = run(&server, dir.path(), &["deactivate", "leavers.csv"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(account.get()["deactivated"], json!(true));
    let path = dir.path().join("leavers.results.csv");
    let lines = all_lines(&path);
    let statuses: Vec<&str> = lines.iter().map(|l| l["status"].as_str()).collect();
    assert_eq!(statuses, ["pending", "ok"], "the intent, then the outcome");
    assert_eq!(lines[0]["message"], "was active");
    let last = &lines[1];
    assert_eq!(last["attempts"], "2");
    assert!(last["message"].contains("was active"), "{last:?}");
    assert!(last["message"].contains("state read back"), "{last:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mapping_written_behind_a_torn_answer_is_ok_with_its_before_state() {
    let server = common::mock_admin_homeserver().await;
    let account = Account::new(
        false,
        json!([{"auth_provider": "saml", "external_id": "old"}]),
    );
    Mock::given(method("GET"))
        .and(path(USER_PATH))
        .respond_with(account.clone())
        .mount(&server)
        .await;
    // The list is written, then the answer is not JSON: a 2xx cut short.
    let lands = LandsThen {
        account: account.clone(),
        change: |a: &mut Value, body: &Value| a["external_ids"] = body["external_ids"].clone(),
        answer: ResponseTemplate::new(200).set_body_string("{\"name\": \"@u:mo"),
    };
    Mock::given(method("PUT"))
        .and(path(USER_PATH))
        .respond_with(lands)
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "map.csv",
        &format!("user,provider,external_id\n{USER},oidc-new,sub-1\n"),
    );
    let run = run(
        &server,
        dir.path(),
        &["set-external-id", "map.csv", "--drop-provider", "saml"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        account.get()["external_ids"],
        json!([{"auth_provider": "oidc-new", "external_id": "sub-1"}])
    );
    let lines = results(&dir.path().join("map.results.csv"));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], "ok", "{lines:?}");
    let message = &lines[0]["message"];
    assert!(
        message.starts_with("was [saml:old]; now [oidc-new:sub-1]"),
        "the undo text survives the lost answer: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn account_created_by_a_killed_run_is_ok_on_resume_not_unchanged() {
    let server = common::mock_admin_homeserver().await;
    // The killed run's PUT made the account; its answer never reached the results file.
    let account = Account::new(false, json!([]));
    Mock::given(method("GET"))
        .and(path(USER_PATH))
        .respond_with(account.clone())
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v2/users"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"users": [{"name": USER}, {"name": "@v:mock.test"}], "total": 2}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path(USER_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(account.get()))
        .expect(0)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "hires.csv",
        &format!("user\n{USER}\n@v:mock.test\n"),
    );
    // What the killed run left: its intent for @u, and @v already done by someone.
    let header = "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,\
                  user,displayname,email,admin,user_type,provider,external_id";
    write(
        dir.path(),
        "hires.results.csv",
        &format!(
            "{header}\n1,create-users {USER},pending,,,create,0,2026-01-01T00:00:00.000Z,0,{USER},,,,,,\n"
        ),
    );
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v2/users/@v:mock.test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "@v:mock.test", "deactivated": false, "admin": false,
            "threepids": [], "external_ids": []
        })))
        .mount(&server)
        .await;
    let run = run(
        &server,
        dir.path(),
        &["create-users", "hires.csv", "--resume"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = results(&dir.path().join("hires.results.csv"));
    let status = |user: &str| {
        lines
            .iter()
            .rev()
            .find(|l| l["user"] == user)
            .map(|l| l["status"].clone())
    };
    assert_eq!(
        status(USER).as_deref(),
        Some("ok"),
        "made by the killed run: {lines:?}"
    );
    assert_eq!(status("@v:mock.test").as_deref(), Some("unchanged"));
}
