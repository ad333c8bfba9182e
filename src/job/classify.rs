//! The one place where an HTTP error becomes a decision: stop the run (the token cannot do this
//! job), retry (the server is busy or was not reached), or record the row as failed.

use super::Outcome;
use crate::executor::{Fail, Transient};
use crate::homeserver::HsError;

/// Sorts an error into abort, retry or a final failure.
pub fn classify(error: HsError) -> Fail<Outcome> {
    let last = Outcome::failed(&error);
    match &error {
        HsError::Status { status: 401, .. } => Fail::Abort(format!(
            "the homeserver rejected the token ({error}); check --token-file or SYNBATCH_TOKEN"
        )),
        HsError::Status {
            status: 403,
            message,
            ..
        } if message.contains("not a server admin") => Fail::Abort(format!(
            "the token's user is not a server admin ({error}); this job needs an admin's token"
        )),
        HsError::Status {
            status: 429,
            retry_after,
            ..
        } => Fail::Retry {
            last,
            kind: Transient::RateLimited(*retry_after),
        },
        HsError::Status {
            status: 502..=504, ..
        }
        | HsError::Timeout(_)
        | HsError::Transport(_) => Fail::Retry {
            last,
            kind: Transient::Failed,
        },
        HsError::Connect(_) => Fail::Retry {
            last,
            kind: Transient::Unreachable,
        },
        _ => Fail::Final(last),
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
        for transient in [503, 502, 504] {
            assert!(matches!(
                classify(status(transient, "", "")),
                Fail::Retry {
                    kind: Transient::Failed,
                    ..
                }
            ));
        }
        assert!(matches!(
            classify(HsError::Connect("refused".into())),
            Fail::Retry {
                kind: Transient::Unreachable,
                ..
            }
        ));
        assert!(matches!(
            classify(status(500, "M_UNKNOWN", "Internal server error")),
            Fail::Final(_)
        ));
    }
}
