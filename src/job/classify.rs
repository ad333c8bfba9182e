//! The one place where an HTTP error becomes a decision: stop the run (the token cannot do this
//! job), retry (the server is busy or was not reached), or record the row as failed.
//!
//! An answer that was lost or torn after the request went out (a timeout, a reset, a 502 from a
//! proxy, a 2xx whose body is cut short, a 500) may hide a change that landed: those are retried,
//! and the retry reads the server's state before it changes anything (see `job::intent`).

use super::Outcome;
use crate::executor::{Fail, Transient};
use crate::homeserver::{HsError, MAX_WAIT};

/// Sorts an error into abort, retry or a final failure.
pub fn classify(error: HsError) -> Fail<Outcome> {
    match decide(&error) {
        Verdict::Abort(why) => Fail::Abort(why),
        Verdict::Retry(kind) => Fail::Retry {
            last: Outcome::failed(&error),
            kind,
        },
        Verdict::Final => Fail::Final(Outcome::failed(&error)),
    }
}

/// Whether an error is worth another try, and of which kind; `None` for a final answer or one
/// that must stop the run.
pub fn transient(error: &HsError) -> Option<Transient> {
    match decide(error) {
        Verdict::Retry(kind) => Some(kind),
        _ => None,
    }
}

enum Verdict {
    Abort(String),
    Retry(Transient),
    Final,
}

fn decide(error: &HsError) -> Verdict {
    match error {
        HsError::Status { status: 401, .. } => Verdict::Abort(format!(
            "the homeserver rejected the token ({error}); check --token-file or SYNBATCH_TOKEN"
        )),
        HsError::Status {
            status: 403,
            message,
            ..
        } if message.contains("not a server admin") => Verdict::Abort(format!(
            "the token's user is not a server admin ({error}); this job needs an admin's token"
        )),
        HsError::Status {
            status: 429,
            retry_after: Some(wait),
            ..
        } if *wait > MAX_WAIT => Verdict::Abort(format!(
            "the homeserver asks to wait more than {} minutes before the next request ({error}), \
             longer than synbatch waits; rerun with --resume later",
            MAX_WAIT.as_secs() / 60
        )),
        // Every later request would be sent away too: the run cannot succeed.
        HsError::Redirect { .. } => Verdict::Abort(error.to_string()),
        HsError::Status {
            status: 429,
            retry_after,
            ..
        } => Verdict::Retry(Transient::RateLimited(*retry_after)),
        HsError::Status {
            status: 502..=504, ..
        } => Verdict::Retry(Transient::Unavailable),
        HsError::Status { status: 500, .. }
        | HsError::Decode {
            status: 200..=299, ..
        }
        | HsError::Timeout(_)
        | HsError::Transport(_) => Verdict::Retry(Transient::Failed),
        HsError::Connect(_) => Verdict::Retry(Transient::Unreachable),
        _ => Verdict::Final,
    }
}

/// Lets a job write `hs.request().await?` and have the error classified.
impl From<HsError> for Fail<Outcome> {
    fn from(error: HsError) -> Self {
        classify(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Status;
    use std::time::Duration;

    fn status(status: u16, errcode: &str, message: &str) -> HsError {
        HsError::Status {
            status,
            errcode: errcode.into(),
            message: message.into(),
            retry_after: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify(status(401, "M_UNKNOWN_TOKEN", "Invalid access token")),
            Fail::Abort(m) if m.contains("rejected the token")
        ));
        assert!(matches!(
            classify(status(403, "M_FORBIDDEN", "You are not a server admin")),
            Fail::Abort(m) if m.contains("not a server admin")
        ));
        assert!(matches!(
            classify(status(403, "M_FORBIDDEN", "You don't have permission")),
            Fail::Final(Outcome {
                status: Status::Failed,
                http_status: Some(403),
                ..
            })
        ));
        assert!(matches!(
            classify(status(429, "M_LIMIT_EXCEEDED", "")),
            Fail::Retry { kind: Transient::RateLimited(Some(d)), .. } if d == Duration::from_secs(2)
        ));
        for down in [503, 502, 504] {
            assert!(matches!(
                classify(status(down, "", "")),
                Fail::Retry {
                    kind: Transient::Unavailable,
                    ..
                }
            ));
        }
        // The change may have landed behind a 500 or a torn 2xx: retried, and settled by reading.
        let torn = HsError::Decode {
            status: 200,
            detail: "EOF while parsing".into(),
        };
        for lost in [status(500, "M_UNKNOWN", "Internal server error"), torn] {
            assert!(matches!(
                classify(lost),
                Fail::Retry {
                    kind: Transient::Failed,
                    ..
                }
            ));
        }
        let mut forever = status(429, "M_LIMIT_EXCEEDED", "");
        if let HsError::Status { retry_after, .. } = &mut forever {
            *retry_after = Some(Duration::from_secs(1_000_000_000));
        }
        assert!(matches!(classify(forever), Fail::Abort(m) if m.contains("longer than")));
        let away = HsError::Redirect {
            status: 307,
            location: "http://elsewhere.example/".into(),
        };
        assert!(matches!(classify(away), Fail::Abort(m) if m.contains("elsewhere")));
        assert!(matches!(
            classify(HsError::Connect("refused".into())),
            Fail::Retry {
                kind: Transient::Unreachable,
                ..
            }
        ));
        assert!(matches!(
            classify(status(400, "M_UNKNOWN", "Bad request")),
            Fail::Final(_)
        ));
    }
}
