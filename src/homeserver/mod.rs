//! Typed HTTP client for the Synapse Admin API and the Matrix Client-Server API.
//!
//! It knows Matrix (paths, JSON bodies, `errcode`s, `Retry-After`) and nothing of spreadsheets.
//! Every path segment goes through `Url::path_segments_mut`, which percent-encodes `#`, `/`, `?`
//! and `%`: an alias like `#general:example.org` never turns into a URL fragment.
//!
//! It trusts no answer: it follows no redirect (`HsError::Redirect`), reads at most `MAX_BODY`
//! bytes of a body (`HsError::TooLarge`), caps every wait a server asks for (`MAX_WAIT`), and
//! takes the token out of every text it hands on, whatever part of an answer it came from.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

mod media;
mod notices;
mod ratelimit;
mod room_admin;
mod room_create;
mod rooms;
mod users;

pub use media::{DeletedMedia, MediaPurge};
pub use notices::{Notices, RoomSummary};
pub use ratelimit::RateOverride;
pub use room_admin::{DeleteTask, RoomDelete};
pub use room_create::StateEvent;
pub use rooms::{CREATOR_POWER, Membership, RoomState};
pub use users::{ExternalId, ListedUser, Threepid, User, UserPage, UserQuery};

/// An access token. Its `Debug` never shows the secret, so it cannot leak through a log line.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Self {
        Token(token)
    }

    /// `text` with every occurrence of the token replaced by `<redacted>`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.0.is_empty() || !text.contains(&self.0) {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(text.replace(&self.0, REDACTED))
        }
    }

    /// Redacts every string of an answer's JSON, keys included, so that no account, room or
    /// mapping a job records or prints can carry the token. A token shorter than
    /// `DATA_REDACT_MIN` is left in data (it is still taken out of every error text): it would
    /// occur in ordinary ids by chance, and rewriting those would corrupt what jobs write back.
    /// Synapse's own tokens are over 30 characters.
    fn redact_value(&self, value: &mut Value) {
        if self.0.len() >= DATA_REDACT_MIN {
            self.redact_strings(value);
        }
    }

    fn redact_strings(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.redact(s) {
                    *s = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_strings(v)),
            Value::Object(map) => {
                if map.keys().any(|k| matches!(self.redact(k), Cow::Owned(_))) {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.redact_strings(&mut v);
                        map.insert(self.redact(&k).into_owned(), v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.redact_strings(v));
                }
            }
            _ => {}
        }
    }

    /// The error with the token taken out of every text in it.
    fn redact_error(&self, error: HsError) -> HsError {
        let clean = |s: String| match self.redact(&s) {
            Cow::Borrowed(_) => s,
            Cow::Owned(clean) => clean,
        };
        match error {
            HsError::Status {
                status,
                errcode,
                message,
                retry_after,
            } => HsError::Status {
                status,
                errcode: clean(errcode),
                message: clean(message),
                retry_after,
            },
            HsError::Connect(m) => HsError::Connect(clean(m)),
            HsError::Transport(m) => HsError::Transport(clean(m)),
            HsError::Decode { status, detail } => HsError::Decode {
                status,
                detail: clean(detail),
            },
            HsError::Redirect { status, location } => HsError::Redirect {
                status,
                location: clean(location),
            },
            e @ (HsError::Timeout(_) | HsError::TooLarge { .. }) => e,
        }
    }
}

/// What stands in for the token wherever a server's answer repeated it.
pub const REDACTED: &str = "<redacted>";

/// The shortest token that is also taken out of answers' data (see `Token::redact_value`).
const DATA_REDACT_MIN: usize = 16;

/// The longest wait synbatch accepts from a server (`Retry-After`, `retry_after_ms`): 15 minutes.
///
/// A wait the server asks for is kept as asked up to this, and capped at `MAX_WAIT + 1 s` past
/// it: a `retry_after` longer than `MAX_WAIT` means "longer than synbatch waits", and the run
/// should stop rather than sleep on it.
pub const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// The largest response body synbatch reads: 4 MiB. The biggest answer it asks for is a page of
/// the account list: measured on Synapse 1.163, about 300 bytes per account (22-character ids,
/// a display name and an avatar), so some 1.5 MB for the 5,000 accounts `create-users` asks for
/// at once. Anything longer is refused: a success announcing more is not read at all, and no
/// body is read past the limit.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// Of an error answer only the start is needed: a Matrix error body is a few hundred bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

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
    /// A 3xx answer. Synapse's API never redirects, and a followed redirect could carry the token
    /// or a password to another server, or make a check pass on that server's answer.
    #[error(
        "the homeserver answered {status} redirecting to {location}: synbatch follows no \
         redirects (one could carry the token or a password elsewhere); give --homeserver the \
         final URL"
    )]
    Redirect { status: u16, location: String },
    /// A body longer than `MAX_BODY` (or a success status announcing one): refused unread.
    #[error(
        "the answer ({status}) is longer than {} MiB, synbatch's limit for any answer \
         (MAX_BODY); no Synapse answer is that long: check that --homeserver names the Synapse \
         itself",
        limit / (1024 * 1024)
    )]
    TooLarge { status: u16, limit: usize },
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
            HsError::Status { status, .. }
            | HsError::Decode { status, .. }
            | HsError::Redirect { status, .. }
            | HsError::TooLarge { status, .. } => Some(*status),
            HsError::Timeout(_) | HsError::Connect(_) | HsError::Transport(_) => None,
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
    /// Kept to take it out of every text an answer brings (a server may echo the header).
    token: Token,
    timeout: Duration,
    /// Synapse delegates authentication to MAS (found by `connect`): it has no guest accounts
    /// to list.
    delegated: bool,
}

impl Homeserver {
    /// Records that the server delegates authentication to MAS.
    pub fn set_delegated(&mut self) {
        self.delegated = true;
    }

    /// Whether the server delegates authentication to MAS.
    pub fn delegated(&self) -> bool {
        self.delegated
    }

    pub fn new(base: Url, token: &Token, timeout: Duration, pool: usize) -> Result<Self, String> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.0))
            .map_err(|_| "the token contains characters that cannot go in a header".to_string())?;
        // Keeps the header out of reqwest's and hyper's Debug output.
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .user_agent(concat!("synbatch/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(pool)
            // A redirect followed would resend the token, and a PUT's password, to wherever
            // it points; 3xx answers come back as they are and `call` refuses them.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Homeserver {
            http,
            base,
            auth,
            token: token.clone(),
            timeout,
            delegated: false,
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
        let answer = self.request(timeout, method, segments, query, body).await;
        match answer {
            Ok((status, mut value)) => {
                self.token.redact_value(&mut value);
                Ok((status, value))
            }
            Err(e) => Err(self.token.redact_error(e)),
        }
    }

    /// One request, its answer checked: no redirect, no body past `MAX_BODY`, JSON on success.
    /// The caller takes the token out of what comes back.
    async fn request(
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
        let url = self.url(segments);
        let mut request = self
            .http
            .request(method, url.clone())
            .timeout(timeout)
            .header(AUTHORIZATION, self.auth.clone());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(HsError::Redirect {
                status: status.as_u16(),
                location: location(&url, response.headers().get(LOCATION)),
            });
        }
        let retry_after =
            retry_after_header(response.headers().get(RETRY_AFTER), SystemTime::now());
        let limit = if status.is_success() {
            MAX_BODY
        } else {
            MAX_ERROR_BODY
        };
        let too_large = HsError::TooLarge {
            status: status.as_u16(),
            limit: MAX_BODY,
        };
        // A success announcing more than the limit is refused before a byte of it is read.
        if status.is_success() && response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large);
        }
        let mut bytes: Vec<u8> = Vec::new();
        let mut complete = true;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            let room = limit - bytes.len();
            if chunk.len() > room {
                bytes.extend_from_slice(&chunk[..room]);
                complete = false;
                break; // the rest is never read: dropping the response closes the connection
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            if !complete {
                return Err(too_large);
            }
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| HsError::Decode {
                    status: status.as_u16(),
                    detail: format!(
                        "the body is not JSON ({e}); it starts: {}",
                        start_of(&self.token, &bytes, 100)
                    ),
                })?
            };
            return Ok((status.as_u16(), value));
        }
        // An error answer cut at MAX_ERROR_BODY is no Matrix error: its start is kept as text.
        Err(error_from_body(status, &bytes, retry_after, &self.token))
    }

    async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<T, HsError> {
        let (status, value) = self.call(method, segments, &[], body).await?;
        decode(status, value)
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

/// Reads a typed answer out of a (redacted) JSON value.
fn decode<T: DeserializeOwned>(status: u16, value: Value) -> Result<T, HsError> {
    serde_json::from_value(value).map_err(|e| HsError::Decode {
        status,
        detail: e.to_string(),
    })
}

/// Where a redirect pointed, for the message: resolved against the request, at most 200
/// characters, `(no Location header)` when there was none.
fn location(request: &Url, header: Option<&HeaderValue>) -> String {
    let Some(raw) = header else {
        return "(no Location header)".into();
    };
    let raw = String::from_utf8_lossy(raw.as_bytes());
    let shown = match request.join(&raw) {
        Ok(url) => url.to_string(),
        Err(_) => raw.into_owned(),
    };
    shown.chars().take(200).collect()
}

/// The start of a body as text, the token taken out before it is cut; line breaks become
/// spaces and other control characters (a binary body's) U+FFFD.
fn start_of(token: &Token, bytes: &[u8], chars: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = token.redact(text.trim());
    let printable = |c: char| match c {
        '\n' | '\r' | '\t' => ' ',
        c if c.is_control() => char::REPLACEMENT_CHARACTER,
        c => c,
    };
    let mut start: String = text.chars().take(chars).map(printable).collect();
    if text.chars().nth(chars).is_some() {
        start.push_str("...");
    }
    start
}

/// Reads a Matrix error body `{"errcode", "error", "retry_after_ms"}`; anything else (an HTML page
/// from a proxy, say) keeps its status and the start of its text. The token is taken out of the
/// text before it is cut, so no part of it is left at the cut.
fn error_from_body(
    status: StatusCode,
    bytes: &[u8],
    retry_after: Option<Duration>,
    token: &Token,
) -> HsError {
    let matrix = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(body)) => Some(body),
        _ => None,
    };
    let (errcode, message, body_wait) = match matrix {
        Some(body) => {
            let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
            (
                token.redact(text("errcode")).into_owned(),
                token.redact(text("error")).into_owned(),
                body.get("retry_after_ms").and_then(retry_after_ms),
            )
        }
        None => {
            let text = start_of(token, bytes, 200);
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

/// A wait as the server asked for it, capped at `MAX_WAIT + 1 s` (past `MAX_WAIT`, it only
/// matters that it is longer than synbatch waits).
fn capped(wait: Duration) -> Duration {
    wait.min(MAX_WAIT + Duration::from_secs(1))
}

/// A number of seconds as a wait: `None` for a negative number or NaN (no wait was asked for),
/// capped for one too long for any `Duration` (infinity included). Never panics.
fn seconds(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(capped(
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX),
    ))
}

/// `retry_after_ms` in a 429's body: a number of milliseconds (anything else is ignored).
fn retry_after_ms(value: &Value) -> Option<Duration> {
    seconds(value.as_f64()? / 1000.0)
}

/// `Retry-After`: seconds (Synapse's form), or an HTTP-date, counted from `now`. A date in the
/// past is no wait; a value that is neither is ignored.
fn retry_after_header(value: Option<&HeaderValue>, now: SystemTime) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    if let Ok(n) = text.parse::<f64>() {
        return seconds(n);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(capped(at.duration_since(now).unwrap_or(Duration::ZERO)))
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
            &token(),
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
        let e = error_from_body(
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
            None,
            &token(),
        );
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.message(), "<html>bad gateway</html>");
        assert_eq!(e.errcode(), "");
    }

    #[test]
    fn the_start_of_a_body_is_printable() {
        let t = token();
        assert_eq!(start_of(&t, b"\0\0\x01a", 10), "\u{FFFD}\u{FFFD}\u{FFFD}a");
        assert_eq!(
            start_of(&t, b" <p>\r\nbad\tgateway</p>\n", 100),
            "<p>  bad gateway</p>"
        );
        assert_eq!(start_of(&t, "\u{e9}t\u{e9}".as_bytes(), 2), "\u{e9}t...");
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("syt_very_secret".into());
        assert!(!format!("{t:?}").contains("secret"));
    }

    const SECRET: &str = "syt_c2VjcmV0_AbCdEfGhIjKlMnOpQrSt_0a1b2c";

    fn token() -> Token {
        Token::new(SECRET.into())
    }

    fn header(value: &str) -> Option<Duration> {
        let value = HeaderValue::from_str(value).unwrap();
        retry_after_header(Some(&value), SystemTime::now())
    }

    /// The cap, and what a wait over it is read as.
    const OVER: Duration = MAX_WAIT.saturating_add(Duration::from_secs(1));

    #[test]
    fn retry_after_header_never_panics_and_is_capped() {
        assert_eq!(header("2"), Some(Duration::from_secs(2)));
        assert_eq!(header(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(header("0"), Some(Duration::ZERO));
        assert_eq!(header("900"), Some(MAX_WAIT), "MAX_WAIT itself is waited");
        let just_over = header("900.5").unwrap();
        assert!(just_over > MAX_WAIT && just_over <= OVER, "{just_over:?}");
        // Too long for a Duration, or for f64 -> u64: capped, recognisably over MAX_WAIT.
        for huge in [
            "1000000000",
            "1e19",
            "1e30",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
            "1e400",
            "inf",
            "+Infinity",
        ] {
            assert_eq!(header(huge), Some(OVER), "{huge}");
        }
        // Not a wait at all: the executor's own backoff applies.
        for junk in ["-5", "-0.001", "NaN", "-inf", "soon", ""] {
            assert_eq!(header(junk), None, "{junk}");
        }
    }

    #[test]
    fn retry_after_header_as_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let at = |text: &str| retry_after_header(Some(&HeaderValue::from_str(text).unwrap()), now);
        // RFC 9110's example date is `now`; a minute after it is a minute's wait.
        assert_eq!(at("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(
            at("Wed, 21 Oct 2015 07:29:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(at("Tue, 20 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("Fri, 31 Dec 9999 23:59:59 GMT"), Some(OVER));
        assert_eq!(at("Wed, 21 Oct 2015 25:99:00 GMT"), None);
    }

    fn body_wait(body: &str, header: Option<Duration>) -> HsError {
        error_from_body(
            StatusCode::TOO_MANY_REQUESTS,
            body.as_bytes(),
            header,
            &token(),
        )
    }

    fn waited(e: &HsError) -> Option<Duration> {
        match e {
            HsError::Status { retry_after, .. } => *retry_after,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_ms_never_panics_and_keeps_the_error() {
        let limited = |ms: &str| {
            body_wait(
                &format!(
                    r#"{{"errcode":"M_LIMIT_EXCEEDED","error":"slow","retry_after_ms":{ms}}}"#
                ),
                None,
            )
        };
        assert_eq!(waited(&limited("2500")), Some(Duration::from_millis(2500)));
        assert_eq!(waited(&limited("900000")), Some(MAX_WAIT));
        for huge in [
            "1e19",
            "1e30",
            "18446744073709551616",
            "1e308",
            "10000000000000000000000000",
        ] {
            let e = limited(huge);
            assert_eq!(waited(&e), Some(OVER), "{huge}");
            // A number out of range loses neither the errcode nor the message.
            assert_eq!(e.errcode(), "M_LIMIT_EXCEEDED", "{huge}");
            assert_eq!(e.message(), "slow", "{huge}");
        }
        for junk in ["-5", "\"5000\"", "null", "true", "[1]"] {
            let e = limited(junk);
            assert_eq!(waited(&e), None, "{junk}");
            assert_eq!(e.errcode(), "M_LIMIT_EXCEEDED", "{junk}");
        }
        // Header and body both: the longer, and still capped.
        let e = body_wait(r#"{"retry_after_ms": 1e30}"#, Some(Duration::from_secs(3)));
        assert_eq!(waited(&e), Some(OVER));
        let e = body_wait(r#"{"retry_after_ms": 1000}"#, Some(Duration::from_secs(3)));
        assert_eq!(waited(&e), Some(Duration::from_secs(3)));
    }

    #[test]
    fn the_token_is_taken_out_of_error_texts() {
        let body = format!(r#"{{"errcode":"M_{SECRET}","error":"bad header: Bearer {SECRET}"}}"#);
        let e = error_from_body(StatusCode::FORBIDDEN, body.as_bytes(), None, &token());
        assert_eq!(e.message(), "bad header: Bearer <redacted>");
        assert_eq!(e.errcode(), "M_<redacted>");
        assert!(!e.to_string().contains(SECRET));
        // Cut at 200 characters: redacted first, so no head of the token is left at the cut.
        for pad in 150..200 {
            let body = format!("{}Authorization: Bearer {SECRET} and more", "x".repeat(pad));
            let e = error_from_body(StatusCode::BAD_REQUEST, body.as_bytes(), None, &token());
            assert!(
                !e.message().contains(&SECRET[..6]),
                "{pad}: {}",
                e.message()
            );
        }
        // Every variant's text.
        let t = token();
        for e in [
            HsError::Transport(format!("reset by {SECRET}")),
            HsError::Connect(format!("refused {SECRET}")),
            HsError::Decode {
                status: 200,
                detail: format!("invalid type: string \"{SECRET}\""),
            },
            HsError::Redirect {
                status: 307,
                location: format!("https://evil.example/?t={SECRET}"),
            },
        ] {
            let clean = t.redact_error(e);
            assert!(!clean.to_string().contains(SECRET), "{clean}");
            assert!(clean.to_string().contains(REDACTED), "{clean}");
        }
    }

    #[test]
    fn the_token_is_taken_out_of_answers() {
        let mut value = serde_json::json!({
            "room_id": format!("!{SECRET}:x"),
            "list": [{"a": SECRET}],
            SECRET: {"nested": format!("Bearer {SECRET}")},
            "n": 5,
        });
        token().redact_value(&mut value);
        let text = value.to_string();
        assert!(!text.contains(SECRET), "{text}");
        assert_eq!(value["room_id"], "!<redacted>:x");
        assert_eq!(value["<redacted>"]["nested"], "Bearer <redacted>");
        assert_eq!(value["n"], 5);
        // A token too short to be a secret is left in data (ids would be rewritten)...
        let mut value = serde_json::json!({"name": "@a:mock.test"});
        Token::new("t".into()).redact_value(&mut value);
        assert_eq!(value["name"], "@a:mock.test");
        // ...but not in error texts.
        assert_eq!(Token::new("t".into()).redact("at"), "a<redacted>");
        // The empty string is not a token: it would be "found" everywhere.
        assert_eq!(Token::new(String::new()).redact("abc"), "abc");
    }

    #[test]
    fn new_errors_keep_status_errcode_and_message() {
        let e = HsError::Redirect {
            status: 307,
            location: "https://other.example/x".into(),
        };
        assert_eq!(e.status(), Some(307));
        assert_eq!(e.errcode(), "");
        let m = e.message();
        assert!(m.contains("https://other.example/x"), "{m}");
        assert!(m.contains("follows no redirects"), "{m}");
        assert!(m.contains("--homeserver"), "{m}");
        let e = HsError::TooLarge {
            status: 200,
            limit: MAX_BODY,
        };
        assert_eq!(e.status(), Some(200));
        assert!(e.message().contains("4 MiB"), "{}", e.message());
    }

    #[test]
    fn a_relative_location_is_shown_whole() {
        let request = Url::parse("http://127.0.0.1:1/_matrix/client").unwrap();
        let to = HeaderValue::from_static("/elsewhere");
        assert_eq!(
            location(&request, Some(&to)),
            "http://127.0.0.1:1/elsewhere"
        );
        assert_eq!(location(&request, None), "(no Location header)");
    }
}
