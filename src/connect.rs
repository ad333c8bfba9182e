//! Turns the homeserver options into a checked connection: the URL (no token over plain http to
//! another machine), the token (from a file or the environment, never the command line), and a
//! first call that proves the token works and is an admin's before any row is sent.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::{Host, Url};

use crate::cli::ServerArgs;
use crate::executor::{self, Fail, Limits, Transient};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError, Token};
use crate::input::ids;
use crate::job::classify::transient;

/// A homeserver that answered, and who the token belongs to.
pub struct Connection {
    pub hs: Arc<Homeserver>,
    pub server_name: String,
    /// The token's own user id.
    pub me: String,
    /// Synapse delegates authentication to MAS (known only after an admin check).
    pub delegated: bool,
    /// The homeserver as `--homeserver` names it.
    pub url: Url,
}

/// Checks the options that need no network: refuses a token on the command line, and a
/// server name that is none.
pub fn check(args: &ServerArgs) -> Result<(), Exit> {
    if let Some(name) = &args.server_name {
        ids::server_name(name).map_err(|why| Exit::usage(format!("--server-name {why}")))?;
    }
    if args.token.is_some() {
        return Err(Exit::Usage(
            "--token is refused: a token on the command line is visible to every user of this \
             machine (ps, shell history). Put it in a file and pass --token-file PATH, or set \
             SYNBATCH_TOKEN"
                .into(),
        ));
    }
    Ok(())
}

/// Connects and checks the token; `need_admin` also checks that its user is a server admin.
pub async fn connect(args: &ServerArgs, pool: usize, need_admin: bool) -> Result<Connection, Exit> {
    let url = homeserver_url(args)?;
    let token = token(args)?;
    crate::secret::keep(&token);
    let mut hs = Homeserver::new(
        url.clone(),
        &token,
        Duration::from_secs_f64(args.timeout),
        pool,
    )
    .map_err(Exit::Usage)?;
    let me = startup(|| hs.whoami())
        .await
        .map_err(|e| refused(&url, e))?;
    let delegated = need_admin && admin_check(&hs, &me, &url).await?;
    if delegated {
        hs.set_delegated();
    }
    // A rate limit that a killed run lifted is put back before anything else.
    crate::lift::restore_leftover(&hs, &url, &me).await?;
    let server_name = match &args.server_name {
        Some(name) => name.clone(),
        None => ids::server_of(&me)
            .and_then(|name| ids::server_name(name).ok())
            .ok_or_else(|| Exit::Aborted(format!("whoami returned a bad user id `{me}`")))?,
    };
    Ok(Connection {
        hs: Arc::new(hs),
        server_name,
        me,
        delegated,
        url,
    })
}

/// Checks that the token is an admin's; returns whether Synapse delegates authentication to
/// MAS. `GET /_synapse/admin/v1/users/<me>/admin` says it in one read where Synapse serves it.
/// Delegating to MAS, Synapse does not register that endpoint (404 `M_UNRECOGNIZED`), and that
/// absence is how delegation is found: `GET /_synapse/admin/v2/users/<me>`, an admin-only read
/// that both modes serve, then decides (under MAS the token's admin scope, not the account's
/// flag, makes an admin, and this read honours the scope).
async fn admin_check(hs: &Homeserver, me: &str, url: &Url) -> Result<bool, Exit> {
    let not_admin = || {
        Exit::Aborted(format!(
            "{me} is not a server admin: this job needs an admin's access token"
        ))
    };
    match startup(|| hs.is_admin(me)).await {
        Ok(true) => Ok(false),
        Ok(false) | Err(HsError::Status { status: 403, .. }) => Err(not_admin()),
        Err(e) if e.status() == Some(404) && e.errcode() == "M_UNRECOGNIZED" => {
            match startup(|| hs.user(me)).await {
                Ok(_) => Ok(true),
                Err(HsError::Status { status: 403, .. }) => Err(not_admin()),
                Err(e) => Err(refused(url, e)),
            }
        }
        Err(e) => Err(refused(url, e)),
    }
}

/// Why a job stops before its first row on a server that delegates accounts to MAS.
pub fn refused_under_mas(job: &str, url: &str, why: &str) -> Exit {
    Exit::Usage(format!(
        "{url} delegates accounts to the Matrix Authentication Service (MAS): {job} cannot run \
         there, {why}. Nothing was sent. Do this in MAS instead: its admin API \
         (/api/admin/v1/users) or `mas-cli manage` (register-user, set-password, promote-admin)"
    ))
}

/// A first call, under the run's retry policy: one 502 or 429 at startup is no reason to stop.
/// What is not worth retrying (a refused token) comes back at once.
pub(crate) async fn startup<T, Fut>(call: impl Fn() -> Fut) -> Result<T, HsError>
where
    Fut: Future<Output = Result<T, HsError>>,
{
    let attempt = || async {
        match call().await {
            Ok(value) => Ok(Ok(value)),
            // A server never reached, or down behind its proxy (502-504), is reported by the
            // caller once the retries are spent: here it is a failure like any other (as
            // `Unreachable` or `Unavailable`, `once` would end in an abort, which a first call
            // never is).
            Err(e) => match transient(&e) {
                Some(Transient::Unreachable | Transient::Unavailable) => Err(Fail::Retry {
                    last: Err(e),
                    kind: Transient::Failed,
                }),
                Some(kind) => Err(Fail::Retry { last: Err(e), kind }),
                None => Ok(Err(e)),
            },
        }
    };
    let limits = Limits::new(1, None, STARTUP_RETRIES);
    match executor::once(&limits, &CancellationToken::new(), attempt).await {
        Ok((answer, _)) => answer,
        // Nothing here aborts, and nothing cancels: the retries end in the last answer.
        Err(_) => unreachable!("startup attempts neither abort nor are cancelled"),
    }
}

/// Retries of the first calls: with the executor's backoff, about a minute of waiting.
const STARTUP_RETRIES: u32 = 5;

fn refused(url: &Url, e: HsError) -> Exit {
    Exit::Aborted(match e {
        HsError::Status { status: 401, .. } => {
            format!("the homeserver rejected the token ({e}): check --token-file or SYNBATCH_TOKEN")
        }
        HsError::Connect(_) | HsError::Timeout(_) => {
            format!("cannot reach the homeserver at {url}: {e}")
        }
        HsError::Status { status: 404, .. } => {
            format!("{url} does not look like a Matrix homeserver ({e}): check --homeserver")
        }
        HsError::Redirect { .. } | HsError::TooLarge { .. } => {
            format!("checking the token at {url}: {e}")
        }
        _ => format!("the homeserver at {url} answered: {e}"),
    })
}

pub fn homeserver_url(args: &ServerArgs) -> Result<Url, Exit> {
    let raw = args.homeserver.as_deref().ok_or_else(|| {
        Exit::Usage(
            "no homeserver: pass --homeserver https://matrix.example.org or set \
             SYNBATCH_HOMESERVER"
                .into(),
        )
    })?;
    // Every message shows the URL as given, less any `user:password@`.
    let shown = without_credentials(raw);
    let url = Url::parse(raw)
        .map_err(|e| Exit::Usage(format!("--homeserver {shown}: not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Exit::Usage(format!(
            "--homeserver {shown}: a user name or password in the URL is refused: it would be \
             sent as Basic auth beside the token, and shown in messages. Remove the \
             `user:password@` part; the access token (--token-file or SYNBATCH_TOKEN) is the only \
             credential synbatch sends"
        )));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) || args.allow_insecure_http => {}
        "http" => {
            return Err(Exit::Usage(format!(
                "--homeserver {shown}: refusing to send the token over plain http to another \
                 machine; use https://, or --allow-insecure-http if you must"
            )));
        }
        other => {
            return Err(Exit::Usage(format!(
                "--homeserver {shown}: expected http:// or https://, not {other}://"
            )));
        }
    }
    Ok(url)
}

/// `raw` with everything between the scheme and its last `@` shown as `***`: for messages about
/// a URL that may hold a password, parsed or not. A password may hold `/`, `?` or `#` unescaped,
/// so the mask goes to the last `@` wherever it is (a homeserver URL has no other use for one).
fn without_credentials(raw: &str) -> std::borrow::Cow<'_, str> {
    let host_at = raw.find("://").map_or(0, |i| i + 3);
    match raw[host_at..].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..host_at], &raw[host_at + at..]).into(),
        None => raw.into(),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn token(args: &ServerArgs) -> Result<Token, Exit> {
    let token = match &args.token_file {
        Some(path) => read_token_file(path)?,
        None => std::env::var("SYNBATCH_TOKEN").map_err(|_| {
            Exit::Usage(
                "no access token: pass --token-file PATH (a file holding an admin's token) or \
                 set SYNBATCH_TOKEN"
                    .into(),
            )
        })?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(Exit::Usage("the access token is empty".into()));
    }
    Ok(Token::new(token))
}

fn read_token_file(path: &Path) -> Result<String, Exit> {
    std::fs::read_to_string(path).map_err(|e| {
        Exit::Usage(format!(
            "--token-file {}: cannot read it: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str, insecure: bool) -> ServerArgs {
        ServerArgs {
            homeserver: Some(url.into()),
            token_file: None,
            token: None,
            server_name: None,
            allow_insecure_http: insecure,
            timeout: 5.0,
        }
    }

    #[test]
    fn plain_http_only_to_this_machine() {
        for ok in [
            "https://matrix.example.org",
            "http://127.0.0.1:8008",
            "http://localhost:8008",
            "http://[::1]:8008",
        ] {
            assert!(homeserver_url(&args(ok, false)).is_ok(), "{ok}");
        }
        let err = homeserver_url(&args("http://matrix.example.org", false)).unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
        assert!(homeserver_url(&args("http://matrix.example.org", true)).is_ok());
        assert!(homeserver_url(&args("ftp://x", true)).is_err());
        assert!(homeserver_url(&args("matrix.example.org", true)).is_err());
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_echoing_them() {
        let refused = [
            "https://admin:hunter2-pw@matrix.example.org",
            "https://admin:hunter2-pw@matrix.example.org/base/",
            "https://admin@matrix.example.org",
            "https://:hunter2-pw@matrix.example.org",
            "http://admin:hunter2-pw@127.0.0.1:8008",
        ];
        // Not URLs at all: the message echoes them, so it masks what may be a password.
        let unparsed = [
            "https://admin:hunter2-pw@matrix example.org",
            "admin:hunter2-pw@matrix.example.org",
            "https://admin:hunter2/pw?x#y@matrix.example.org",
        ];
        for url in refused.iter().chain(&unparsed) {
            let err = homeserver_url(&args(url, false)).unwrap_err();
            assert_eq!(err.code(), 2, "{url}: {err}");
            let message = err.to_string();
            assert!(!message.contains("hunter2"), "{url}: {message}");
            assert!(message.contains("***@"), "{url}: {message}");
            if refused.contains(url) {
                assert!(message.contains("user name or password"), "{message}");
            }
        }
        // An `@` after the host is no credential (a message would mask up to it all the same).
        assert!(homeserver_url(&args("https://matrix.example.org/a@b", false)).is_ok());
        assert_eq!(
            without_credentials("https://u:p@h.org/x"),
            "https://***@h.org/x"
        );
        assert_eq!(without_credentials("https://h.org/x"), "https://h.org/x");
    }
}
