//! Typed HTTP client for the Synapse Admin API and the Matrix Client-Server API.
//!
//! It knows Matrix (paths, JSON bodies, `errcode`s, `Retry-After`) and nothing of spreadsheets.
//! Every path segment goes through `Url::path_segments_mut`, which percent-encodes `#`, `/`, `?`
//! and `%`: an alias like `#general:example.org` never turns into a URL fragment.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

mod media;
mod rooms;
mod users;

pub use media::{DeletedMedia, MediaPurge};
pub use rooms::{Membership, RoomState};
pub use users::{ExternalId, ListedUser, Threepid, User, UserPage, UserQuery};

/// An access token. Its `Debug` never shows the secret, so it cannot leak through a log line.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Self {
        Token(token)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a request did not give the answer that was asked for.
#[derive(Debug, thiserror::Error)]
pub enum HsError {
    /// The server answered with an error status (a Matrix error body when it had one).
    #[error("{}", status_text(*status, errcode, message))]
    Status {
        status: u16,
        errcode: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("no answer within {0:?} (--timeout)")]
    Timeout(Duration),
    #[error("cannot connect to the homeserver: {0}")]
    Connect(String),
    /// The connection broke mid-request: reset, or a response cut short.
    #[error("connection failed: {0}")]
    Transport(String),
    /// A success status whose body is not what the API documents.
    #[error("unexpected answer ({status}): {detail}")]
    Decode { status: u16, detail: String },
}

/// `404 M_NOT_FOUND: User not found`, or `502: Bad Gateway` when there is no errcode.
fn status_text(status: u16, errcode: &str, message: &str) -> String {
    match (errcode.is_empty(), message.is_empty()) {
        (true, true) => status.to_string(),
        (true, false) => format!("{status}: {message}"),
        (false, true) => format!("{status} {errcode}"),
        (false, false) => format!("{status} {errcode}: {message}"),
    }
}

impl HsError {
    pub fn status(&self) -> Option<u16> {
        match self {
            HsError::Status { status, .. } | HsError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn errcode(&self) -> &str {
        match self {
            HsError::Status { errcode, .. } => errcode,
            _ => "",
        }
    }

    /// The human part of the error, without status or errcode (those have their own columns).
    pub fn message(&self) -> String {
        match self {
            HsError::Status { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

pub struct Homeserver {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    timeout: Duration,
}

impl Homeserver {
    pub fn new(base: Url, token: &Token, timeout: Duration, pool: usize) -> Result<Self, String> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.0))
            .map_err(|_| "the token contains characters that cannot go in a header".to_string())?;
        // Keeps the header out of reqwest's and hyper's Debug output.
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("synbatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(pool)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Homeserver {
            http,
            base,
            auth,
            timeout,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("homeserver URL is http(s), so it has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends one request and returns the JSON body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), HsError> {
        self.call_within(self.timeout, method, segments, query, body)
            .await
    }

    /// `call` with its own time limit, for the rare request that may take far longer than
    /// `--timeout` (a synchronous purge of years of media).
    async fn call_within(
        &self,
        timeout: Duration,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), HsError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                HsError::Timeout(timeout)
            } else if e.is_connect() {
                HsError::Connect(root_cause(&e))
            } else {
                HsError::Transport(root_cause(&e))
            }
        };
        let mut request = self
            .http
            .request(method, self.url(segments))
            .timeout(timeout)
            .header(AUTHORIZATION, self.auth.clone());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = retry_after_header(response.headers().get(RETRY_AFTER));
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| HsError::Decode {
                    status: status.as_u16(),
                    detail: format!("body is not JSON: {e}"),
                })?
            };
            return Ok((status.as_u16(), value));
        }
        Err(error_from_body(status, &bytes, retry_after))
    }

    async fn call_as<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<T, HsError> {
        let (status, value) = self.call(method, segments, &[], body).await?;
        serde_json::from_value(value).map_err(|e| HsError::Decode {
            status,
            detail: e.to_string(),
        })
    }

    /// `GET /_matrix/client/v3/account/whoami`: the user the token belongs to.
    pub async fn whoami(&self) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct WhoAmI {
            user_id: String,
        }
        let me: WhoAmI = self
            .call_as(
                Method::GET,
                &["_matrix", "client", "v3", "account", "whoami"],
                None,
            )
            .await?;
        Ok(me.user_id)
    }
}

/// Reads a Matrix error body `{"errcode", "error", "retry_after_ms"}`; anything else (an HTML page
/// from a proxy, say) keeps its status and the start of its text.
fn error_from_body(status: StatusCode, bytes: &[u8], retry_after: Option<Duration>) -> HsError {
    #[derive(Deserialize)]
    struct MatrixError {
        #[serde(default)]
        errcode: String,
        #[serde(default)]
        error: String,
        retry_after_ms: Option<u64>,
    }
    let (errcode, message, body_wait) = match serde_json::from_slice::<MatrixError>(bytes) {
        Ok(e) => (
            e.errcode,
            e.error,
            e.retry_after_ms.map(Duration::from_millis),
        ),
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            let text: String = text.trim().chars().take(200).collect();
            let text = if text.is_empty() {
                status.canonical_reason().unwrap_or("").to_string()
            } else {
                text
            };
            (String::new(), text, None)
        }
    };
    // The spec deprecates retry_after_ms for the header, and servers send either: take the longer.
    let retry_after = match (retry_after, body_wait) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    HsError::Status {
        status: status.as_u16(),
        errcode,
        message,
        retry_after,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Synapse).
fn retry_after_header(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: f64 = value?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The innermost cause of a transport error ("Connection refused", "connection reset"), without
/// the URL that reqwest's own Display adds.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(base: &str) -> Homeserver {
        Homeserver::new(
            Url::parse(base).unwrap(),
            &Token::new("secret".into()),
            Duration::from_secs(1),
            1,
        )
        .unwrap()
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let url = hs("https://m.example.org").url(&[
            "_synapse",
            "admin",
            "v1",
            "join",
            "#general/x?y%:example.org",
        ]);
        assert_eq!(
            url.as_str(),
            "https://m.example.org/_synapse/admin/v1/join/%23general%2Fx%3Fy%25:example.org"
        );
    }

    #[test]
    fn base_path_is_kept() {
        let url = hs("https://example.org/matrix/").url(&["_matrix", "client"]);
        assert_eq!(url.as_str(), "https://example.org/matrix/_matrix/client");
    }

    #[test]
    fn matrix_error_body_and_retry_after() {
        let e = error_from_body(
            StatusCode::TOO_MANY_REQUESTS,
            br#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":2500}"#,
            Some(Duration::from_secs(2)),
        );
        match e {
            HsError::Status {
                status,
                errcode,
                retry_after,
                ..
            } => {
                assert_eq!(status, 429);
                assert_eq!(errcode, "M_LIMIT_EXCEEDED");
                assert_eq!(retry_after, Some(Duration::from_millis(2500)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_json_error_keeps_text() {
        let e = error_from_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", None);
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.message(), "<html>bad gateway</html>");
        assert_eq!(e.errcode(), "");
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("syt_very_secret".into());
        assert!(!format!("{t:?}").contains("secret"));
    }
}
