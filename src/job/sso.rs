//! What `set-external-id` and `remove-external-id` share: both read an account's SSO mappings,
//! recompute the list, and write it back whole.
//!
//! `GET /_synapse/admin/v2/users/<user_id>` -> `{"external_ids": [{"auth_provider",
//! "external_id"}], ...}` or 404. `PUT` the same path with `{"external_ids": [...]}` replaces the
//! whole list, and CREATES the account if it does not exist: so every row GETs first, and a
//! missing account is `failed`, never created. A retried row runs the whole attempt again, from
//! a fresh GET, so a PUT that timed out but landed is seen and not undone.

use super::{Intent, Outcome, Step};
use crate::executor::Fail;
use crate::homeserver::{ExternalId, Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::results::Cause;

/// Reads a provider id: Synapse stores any string, but one with white space is a typo.
pub fn provider(cell: &str, what: &str) -> Result<String, String> {
    if cell.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if cell.chars().any(char::is_whitespace) {
        return Err(format!(
            "{what} `{}` contains white space: provider ids look like `oidc-google` or `saml`",
            crate::input::quote(cell)
        ));
    }
    Ok(cell.to_string())
}

/// The account's mappings now. A missing account is a final failure: the PUT that would follow
/// would create it.
pub async fn current(hs: &Homeserver, user_id: &str) -> Step<Vec<ExternalId>> {
    match hs.user(user_id).await {
        Ok(user) => Ok(user.external_ids),
        Err(e @ HsError::Status { status: 404, .. }) => Err(Fail::Final(
            Outcome::failed(&e)
                .because(Cause::UserNotFound)
                .saying(format!(
                    "no such user {user_id}: nothing was changed (this job never creates accounts)"
                )),
        )),
        Err(e) => Err(e.into()),
    }
}

/// For `--check`: the account a cell names and its mappings now, or why there is none.
pub async fn before_for_check(
    hs: &Homeserver,
    user: &UserRef,
) -> Result<Result<(String, Vec<ExternalId>), String>, HsError> {
    let user_id = match user {
        UserRef::Mxid(id) => id.clone(),
        UserRef::Email(address) => match hs.user_by_email(address).await {
            Ok(id) => id,
            Err(HsError::Status { status: 404, .. }) => {
                return Ok(Err(format!("no account has the email address {address}")));
            }
            Err(e) => return Err(e),
        },
    };
    match hs.user(&user_id).await {
        Ok(user) => Ok(Ok((user_id, user.external_ids))),
        Err(HsError::Status { status: 404, .. }) => Ok(Err(format!(
            "no such user {user_id} (this job never creates accounts)"
        ))),
        Err(e) => Err(e),
    }
}

/// Writes the recomputed list, its intent recorded first; `ok` records what it was and what it
/// is now, enough to undo it. The before-state is the first attempt's, should this be a retry.
/// The PUT's own error comes back inside, for the job to read (a 409 means something to it).
pub async fn write(
    hs: &Homeserver,
    user_id: &str,
    before: &[ExternalId],
    after: &[ExternalId],
    intent: &Intent<'_>,
) -> Step<Result<Outcome, HsError>> {
    intent.sending(&format!("was {}", show(before))).await?;
    Ok(hs.set_external_ids(user_id, after).await.map(|status| {
        let was = intent
            .before()
            .unwrap_or_else(|| format!("was {}", show(before)));
        Outcome::ok(status).saying(format!("{was}; now {}", show(after)))
    }))
}

/// Whether two lists hold the same mappings, in any order.
pub fn same(a: &[ExternalId], b: &[ExternalId]) -> bool {
    let key = |m: &ExternalId| (m.auth_provider.clone(), m.external_id.clone());
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

/// `[oidc-new:1234, saml:alice]`, for messages and the dry run.
pub fn show(list: &[ExternalId]) -> String {
    let pairs: Vec<String> = list.iter().map(pair).collect();
    format!("[{}]", pairs.join(", "))
}

pub fn pair(m: &ExternalId) -> String {
    format!("{}:{}", m.auth_provider, m.external_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, id: &str) -> ExternalId {
        ExternalId {
            auth_provider: p.into(),
            external_id: id.into(),
        }
    }

    #[test]
    fn order_does_not_matter() {
        assert!(same(
            &[m("a", "1"), m("b", "2")],
            &[m("b", "2"), m("a", "1")]
        ));
        assert!(!same(&[m("a", "1")], &[m("a", "1"), m("b", "2")]));
        assert_eq!(
            show(&[m("oidc-x", "1"), m("saml", "u")]),
            "[oidc-x:1, saml:u]"
        );
    }

    #[test]
    fn provider_ids_have_no_white_space() {
        assert!(provider("oidc new", "provider").is_err());
        assert!(provider("", "provider").is_err());
        assert_eq!(provider("oidc-new", "provider"), Ok("oidc-new".into()));
    }
}
