//! The admin API for one account's own rate limit:
//! `/_synapse/admin/v1/users/<user_id>/override_ratelimit` (GET, POST, DELETE).
//!
//! Synapse reads the override as a whole switch for every limiter that knows the requester
//! (invites, joins, messages): 0 messages a second turns them off for the account; a non-zero
//! value only changes the rate of sending events.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Homeserver, HsError};

/// An account's override, as Synapse stores it (whole numbers, 0 for "no limit").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateOverride {
    pub messages_per_second: u64,
    pub burst_count: u64,
}

impl RateOverride {
    /// No limit at all: what `--lift-ratelimit` sets.
    pub const LIFTED: RateOverride = RateOverride {
        messages_per_second: 0,
        burst_count: 0,
    };
}

fn path(user_id: &str) -> [&str; 6] {
    [
        "_synapse",
        "admin",
        "v1",
        "users",
        user_id,
        "override_ratelimit",
    ]
}

impl Homeserver {
    /// `GET .../override_ratelimit`: the account's override, `None` when it has none (`{}`).
    pub async fn ratelimit_override(&self, user_id: &str) -> Result<Option<RateOverride>, HsError> {
        let (status, value) = self.call(Method::GET, &path(user_id), &[], None).await?;
        read(status, value)
    }

    /// `POST .../override_ratelimit`: sets the override; Synapse answers what it stored, which
    /// must be what was asked.
    pub async fn set_ratelimit_override(
        &self,
        user_id: &str,
        to: RateOverride,
    ) -> Result<(), HsError> {
        let body = serde_json::to_value(to).expect("two numbers serialise");
        let (status, value) = self
            .call(Method::POST, &path(user_id), &[], Some(&body))
            .await?;
        match read(status, value)? {
            Some(stored) if stored == to => Ok(()),
            other => Err(HsError::Decode {
                status,
                detail: format!(
                    "setting the rate limit of {user_id} to {to:?}, Synapse answered {other:?}"
                ),
            }),
        }
    }

    /// `DELETE .../override_ratelimit`: the account follows the server's limits again.
    pub async fn delete_ratelimit_override(&self, user_id: &str) -> Result<(), HsError> {
        self.call(Method::DELETE, &path(user_id), &[], None)
            .await
            .map(|_| ())
    }
}

/// `{}` is no override; an object with both numbers is one; anything else is refused.
fn read(status: u16, value: Value) -> Result<Option<RateOverride>, HsError> {
    match &value {
        Value::Object(fields) if fields.is_empty() => Ok(None),
        _ => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| HsError::Decode {
                status,
                detail: format!("the account's rate limit override: {e}"),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(read(200, json!({})).unwrap(), None);
        assert_eq!(
            read(200, json!({"messages_per_second": 3, "burst_count": 4})).unwrap(),
            Some(RateOverride {
                messages_per_second: 3,
                burst_count: 4
            })
        );
        for bad in [
            json!(null),
            json!([]),
            json!({"messages_per_second": 3}),
            json!({"messages_per_second": -1, "burst_count": 0}),
            json!({"messages_per_second": 0.5, "burst_count": 0}),
        ] {
            assert!(read(200, bad.clone()).is_err(), "{bad}");
        }
    }
}
