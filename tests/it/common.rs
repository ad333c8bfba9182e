//! Shared by the integration tests: the real Synapse (started by tests/synapse/harness.py, once
//! per profile for all tests), fresh users and rooms per test, and running the synbatch binary
//! the way a user does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// A running Synapse and an admin's token on it.
#[derive(Debug, Clone)]
pub struct Synapse {
    pub url: String,
    pub server_name: String,
    pub admin_token: String,
    /// The harness profile the server runs as (`default`, or `postgres-default` on PostgreSQL).
    pub profile: String,
    /// The MAS stand-in (`mas` profile only): accounts and tokens come from it.
    pub mas: Option<Mas>,
}

/// What the `mas` profile's Synapse trusts: the stand-in's URL and the shared secret.
#[derive(Debug, Clone)]
pub struct Mas {
    pub url: String,
    pub secret: String,
}

/// The shared server of a profile (`relaxed`: no rate limits; `default`: Synapse's own limits;
/// `mas`: relaxed, authentication delegated to MAS). With `SYNBATCH_TEST_DB=postgres`, relaxed
/// and default run on PostgreSQL instead of SQLite (the harness's `postgres` and
/// `postgres-default`). A test that cannot get its server fails here; it never skips.
pub fn synapse(profile: &'static str) -> Synapse {
    static RELAXED: OnceLock<Synapse> = OnceLock::new();
    static DEFAULT: OnceLock<Synapse> = OnceLock::new();
    static MAS: OnceLock<Synapse> = OnceLock::new();
    let (cell, harness_profile) = match (profile, test_db().as_str()) {
        ("relaxed", "sqlite") => (&RELAXED, "relaxed"),
        ("relaxed", "postgres") => (&RELAXED, "postgres"),
        ("default", "sqlite") => (&DEFAULT, "default"),
        ("default", "postgres") => (&DEFAULT, "postgres-default"),
        ("mas", _) => (&MAS, "mas"),
        (other, _) => panic!("unknown Synapse profile {other}"),
    };
    cell.get_or_init(|| start(harness_profile)).clone()
}

/// `SYNBATCH_TEST_DB`: `sqlite` (the default) or `postgres`; anything else fails the test.
fn test_db() -> String {
    match std::env::var("SYNBATCH_TEST_DB") {
        Err(_) => "sqlite".into(),
        Ok(db) if db == "sqlite" || db == "postgres" => db,
        Ok(other) => panic!("SYNBATCH_TEST_DB={other}: expected sqlite or postgres"),
    }
}

fn start(profile: &str) -> Synapse {
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/synapse/harness.py");
    let output = Command::new("python3")
        .arg(&harness)
        .args(["ensure", "--profile", profile])
        .stdin(Stdio::null())
        .output()
        .expect("python3 must be installed to run the real-Synapse tests");
    assert!(
        output.status.success(),
        "could not start the test Synapse ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let state: Value = serde_json::from_slice(&output.stdout).expect("harness prints JSON");
    let s = |k: &str| state[k].as_str().expect(k).to_string();
    Synapse {
        url: s("url"),
        server_name: s("server_name"),
        admin_token: s("admin_token"),
        profile: profile.to_string(),
        mas: state.get("mas_url").map(|_| Mas {
            url: s("mas_url"),
            secret: s("mas_secret"),
        }),
    }
}

/// A name no other test (nor an earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{:x}-{}",
        std::process::id(),
        nanos % 0xffff_ffff,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

impl Synapse {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("test Synapse answers");
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(Value::Null);
        (status, value)
    }

    /// Creates users with the given localpart prefix; returns their ids.
    pub async fn users(&self, prefix: &str, n: usize) -> Vec<String> {
        let base = unique(prefix);
        let ids: Vec<String> = (0..n)
            .map(|i| format!("@{base}-{i}:{}", self.server_name))
            .collect();
        // Sixteen at a time: SQLite Synapse prefers that to one burst.
        for chunk in ids.chunks(16) {
            let mut set = tokio::task::JoinSet::new();
            for id in chunk {
                let (server, id) = (self.clone(), id.clone());
                set.spawn(async move {
                    server
                        .create_user(&id, json!({"password": "pw-Test-1"}))
                        .await
                });
            }
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }
        }
        ids
    }

    /// Creates (or updates) an account. Under MAS, the way MAS does (`provision_user`): only
    /// `displayname` is taken from `body`, as MAS owns passwords.
    pub async fn create_user(&self, id: &str, body: Value) {
        if let Some(mas) = &self.mas {
            let localpart = id[1..].split(':').next().unwrap();
            let mut provision = json!({"localpart": localpart});
            if let Some(name) = body.get("displayname") {
                provision["set_displayname"] = name.clone();
            }
            let response = reqwest::Client::new()
                .post(format!("{}/_synapse/mas/provision_user", self.url))
                .bearer_auth(&mas.secret)
                .json(&provision)
                .send()
                .await
                .expect("test Synapse answers");
            let status = response.status().as_u16();
            assert!(status == 201 || status == 200, "provision {id}: {status}");
            return;
        }
        let path = format!("/_synapse/admin/v2/users/{}", enc(id));
        let (status, answer) = self.call("PUT", &path, Some(body)).await;
        assert!(
            status == 201 || status == 200,
            "create {id}: {status} {answer}"
        );
    }

    /// Creates a room as the admin; returns (room_id, alias).
    pub async fn room(&self, prefix: &str, public: bool) -> (String, String) {
        let name = unique(prefix);
        let preset = if public {
            "public_chat"
        } else {
            "private_chat"
        };
        let (status, body) = self
            .call(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(json!({"preset": preset, "room_alias_name": name})),
            )
            .await;
        assert_eq!(status, 200, "createRoom: {body}");
        let room_id = body["room_id"].as_str().unwrap().to_string();
        (room_id, format!("#{name}:{}", self.server_name))
    }

    pub async fn members(&self, room_id: &str) -> Vec<String> {
        let path = format!("/_synapse/admin/v1/rooms/{}/members", enc(room_id));
        let (status, body) = self.call("GET", &path, None).await;
        assert_eq!(status, 200, "members: {body}");
        let mut members: Vec<String> = body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        members.sort();
        members
    }

    /// A room's current state events (admin API).
    pub async fn room_state(&self, room_id: &str) -> Vec<Value> {
        let path = format!("/_synapse/admin/v1/rooms/{}/state", enc(room_id));
        let (status, body) = self.call("GET", &path, None).await;
        assert_eq!(status, 200, "state of {room_id}: {body}");
        body["state"].as_array().expect("a state list").clone()
    }

    /// A user's membership in a room (`join`, `invite`, `leave`, ...), from the room's state.
    pub async fn membership(&self, room_id: &str, user: &str) -> Option<String> {
        self.room_state(room_id)
            .await
            .iter()
            .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
            .and_then(|e| e["content"]["membership"].as_str().map(String::from))
    }

    /// Logs in with a password (the Client-Server API); the status tells whether it worked.
    pub async fn login(&self, user_id: &str, password: &str) -> u16 {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
        });
        let response = reqwest::Client::new()
            .post(format!("{}/_matrix/client/v3/login", self.url))
            .json(&body)
            .send()
            .await
            .expect("test Synapse answers");
        response.status().as_u16()
    }

    /// The account as the admin API shows it.
    pub async fn user(&self, user_id: &str) -> (u16, Value) {
        let path = format!("/_synapse/admin/v2/users/{}", enc(user_id));
        self.call("GET", &path, None).await
    }

    /// A token for a user who is not an admin (under MAS, one the stand-in vouches for).
    pub async fn user_token(&self, user_id: &str) -> String {
        if let Some(mas) = &self.mas {
            let localpart = user_id[1..].split(':').next().unwrap();
            let response = reqwest::Client::new()
                .post(format!("{}/_test/tokens", mas.url))
                .bearer_auth(&mas.secret)
                .json(&json!({"username": localpart, "admin": false}))
                .send()
                .await
                .expect("the MAS stand-in answers");
            let body: Value = response.json().await.expect("the stand-in answers JSON");
            return body["token"].as_str().expect("a token").to_string();
        }
        let path = format!("/_synapse/admin/v1/users/{}/login", enc(user_id));
        let (status, body) = self.call("POST", &path, Some(json!({}))).await;
        assert_eq!(status, 200, "login as {user_id}: {body}");
        body["access_token"].as_str().unwrap().to_string()
    }
}

/// Percent-encodes one path segment.
pub fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// What a synbatch run left behind.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn synbatch() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synbatch"));
    cmd.env_remove("SYNBATCH_TOKEN")
        .env_remove("SYNBATCH_HOMESERVER")
        .stdin(Stdio::null());
    cmd
}

/// Runs synbatch against `server` with its admin token (from the environment).
pub fn run_against(server: &Synapse, dir: &Path, args: &[&str]) -> Run {
    let output = synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", &server.admin_token)
        .arg(args[0])
        .args(["--homeserver", &server.url])
        .args(&args[1..])
        .output()
        .expect("run synbatch");
    finish(output, Some(&server.admin_token))
}

/// Checks the universal promise: the token never appears in any output.
pub fn finish(output: Output, token: Option<&str>) -> Run {
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    if let Some(token) = token {
        assert!(!run.stdout.contains(token), "token in stdout");
        assert!(!run.stderr.contains(token), "token in stderr");
    }
    run
}

/// The results file as rows of column -> value.
/// The final lines of a results file (each row's `ok`, `unchanged`, `failed` or `invalid`),
/// without the `pending` lines written before each change.
pub fn results(path: &Path) -> Vec<HashMap<String, String>> {
    all_lines(path)
        .into_iter()
        .filter(|line| line.get("status").map(String::as_str) != Some("pending"))
        .collect()
}

/// Every line of a results file, `pending` lines included.
pub fn all_lines(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Writes an input file in `dir`.
pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

impl Synapse {
    /// An account's SSO mappings as sorted `provider:id` strings (the account must exist).
    pub async fn external_ids(&self, user_id: &str) -> Vec<String> {
        let path = format!("/_synapse/admin/v2/users/{}", enc(user_id));
        let (status, body) = self.call("GET", &path, None).await;
        assert_eq!(status, 200, "GET {user_id}: {body}");
        let mut ids: Vec<String> = body["external_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m["auth_provider"].as_str().unwrap(),
                    m["external_id"].as_str().unwrap()
                )
            })
            .collect();
        ids.sort();
        ids
    }

    /// Uploads `bytes` as `token`'s user; returns the `mxc://` URI.
    pub async fn upload(&self, token: &str, bytes: Vec<u8>) -> String {
        let response = reqwest::Client::new()
            .post(format!(
                "{}/_matrix/media/v3/upload?filename=test.bin",
                self.url
            ))
            .bearer_auth(token)
            .header("Content-Type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("test Synapse answers");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "upload: {body}");
        body["content_uri"].as_str().unwrap().to_string()
    }

    /// What the admin API knows of a local `mxc://` item: (status, media_info).
    pub async fn media_info(&self, mxc: &str) -> (u16, Value) {
        let (server, id) = mxc
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .unwrap();
        let path = format!("/_synapse/admin/v1/media/{}/{}", enc(server), enc(id));
        let (status, body) = self.call("GET", &path, None).await;
        (status, body["media_info"].clone())
    }
}

/// `first | second`, both synbatch against `server`, run in `dir`.
pub fn run_piped(server: &Synapse, dir: &Path, first: &[&str], second: &[&str]) -> (Run, Run) {
    let spawn = |args: &[&str], stdin: Stdio| {
        synbatch()
            .current_dir(dir)
            .env("SYNBATCH_TOKEN", &server.admin_token)
            .arg(args[0])
            .args(["--homeserver", &server.url])
            .args(&args[1..])
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run synbatch")
    };
    let mut producer = spawn(first, Stdio::null());
    let pipe = producer.stdout.take().unwrap();
    let consumer = spawn(second, Stdio::from(pipe));
    let second_run = finish(
        consumer.wait_with_output().unwrap(),
        Some(&server.admin_token),
    );
    let first_run = finish(
        producer.wait_with_output().unwrap(),
        Some(&server.admin_token),
    );
    (first_run, second_run)
}

/// A mock homeserver on 127.0.0.1 (for what a real Synapse cannot be made to do on demand)
/// whose token is the admin `@admin:mock.test`'s: whoami and the admin check answer.
pub async fn mock_admin_homeserver() -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_matrix/client/v3/account/whoami"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"user_id": "@admin:mock.test"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/_synapse/admin/v1/users/@admin:mock.test/admin"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"admin": true})))
        .mount(&server)
        .await;
    server
}

/// Runs synbatch with `server`'s admin token against `url` (the server's own, or a proxy in
/// front of it), killing it if it runs longer than `limit` (then `code` is -1 and `stderr`
/// says so). Output is drained as it comes, so a chatty run cannot block on a full pipe.
pub fn run_via(server: &Synapse, url: &str, dir: &Path, args: &[&str], limit: Duration) -> Run {
    let mut child = synbatch()
        .current_dir(dir)
        .env("SYNBATCH_TOKEN", &server.admin_token)
        .arg(args[0])
        .args(["--homeserver", url])
        .args(&args[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synbatch");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            text
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let mut killed = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            killed = true;
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut run = finish(
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        Some(&server.admin_token),
    );
    if killed {
        run.stderr
            .push_str(&format!("\n(killed by the test after {limit:?})"));
    }
    run
}

/// A results file read line by line, keeping what a plain `results` would choke on: `lines`
/// are the whole records, `torn` the ones with the wrong number of fields, and a last line
/// without its newline (cut short: synbatch ignores it, whatever its fields look like).
pub struct ResultsFile {
    pub lines: Vec<HashMap<String, String>>,
    pub torn: Vec<String>,
}

pub fn results_file(path: &Path) -> ResultsFile {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let whole = bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |at| at + 1);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(&bytes[..whole]);
    let headers = reader.headers().unwrap().clone();
    let mut file = ResultsFile {
        lines: vec![],
        torn: vec![],
    };
    for record in reader.records() {
        match record {
            Ok(r) if r.len() == headers.len() => file.lines.push(
                headers
                    .iter()
                    .map(String::from)
                    .zip(r.iter().map(String::from))
                    .collect(),
            ),
            Ok(r) => file.torn.push(r.iter().collect::<Vec<_>>().join(",")),
            Err(e) => file.torn.push(e.to_string()),
        }
    }
    if whole < bytes.len() {
        file.torn
            .push(String::from_utf8_lossy(&bytes[whole..]).into_owned());
    }
    file
}

/// What a raw-socket homeserver does with a request other than the startup calls.
pub enum Raw {
    /// Answer 200 with this JSON body, and keep the connection.
    Body(&'static str),
    /// The handler wrote what it liked (or nothing): close the connection.
    Hangup,
}

/// Serves one connection of a homeserver on a raw socket, for what wiremock cannot do (torn
/// or endless answers): whoami, the admin check and room members answer as an admin's server
/// would; every other request goes to `other`, with its request head.
pub fn serve_raw(
    stream: &mut std::net::TcpStream,
    mut other: impl FnMut(&mut std::net::TcpStream, &str) -> Raw,
) {
    use std::io::{Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if pending.len() < end + 4 + length {
            continue;
        }
        pending.drain(..end + 4 + length);
        let body = if head.contains("/account/whoami") {
            r#"{"user_id":"@admin:mock.test"}"#
        } else if head.contains("/admin HTTP") {
            r#"{"admin":true}"#
        } else if head.contains("/members") {
            r#"{"members":[],"total":0}"#
        } else {
            match other(stream, &head) {
                Raw::Body(body) => body,
                Raw::Hangup => return,
            }
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
