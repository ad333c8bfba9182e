//! User cells that are email addresses, resolved through the admin threepid lookup
//! (`GET /_synapse/admin/v1/threepid/email/users/<address>` -> `{"user_id"}` or 404), once per
//! address per run.

use super::{Cache, Outcome, Step};
use crate::executor::Fail;
use crate::homeserver::{Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::results::Cause;

#[derive(Default)]
pub struct Users {
    by_email: Cache<String>,
}

impl Users {
    /// The user id a user cell names. An email without an account is a final failure.
    pub async fn resolve(&self, hs: &Homeserver, user: &UserRef) -> Step<String> {
        let address = match user {
            UserRef::Mxid(id) => return Ok(id.clone()),
            UserRef::Email(address) => address,
        };
        match self.lookup(hs, address).await {
            Ok(id) => Ok(id),
            Err(e @ HsError::Status { status: 404, .. }) => Err(Fail::Final(
                Outcome::failed(&e)
                    .because(Cause::EmailNotFound)
                    .saying(format!("no account has the email address {address}")),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn lookup(&self, hs: &Homeserver, address: &str) -> Result<String, HsError> {
        self.by_email
            .get_or_try(address, || hs.user_by_email(address))
            .await
    }

    /// For `--check`: why a user cell names no existing account, if it does not.
    pub async fn why_missing(
        &self,
        hs: &Homeserver,
        user: &UserRef,
    ) -> Result<Option<String>, HsError> {
        let user_id = match user {
            UserRef::Mxid(id) => id.clone(),
            UserRef::Email(address) => match self.lookup(hs, address).await {
                Ok(id) => id,
                Err(HsError::Status { status: 404, .. }) => {
                    return Ok(Some(format!("no account has the email address {address}")));
                }
                Err(e) => return Err(e),
            },
        };
        match hs.user(&user_id).await {
            Ok(_) => Ok(None),
            Err(HsError::Status { status: 404, .. }) => Ok(Some(format!("no account {user_id}"))),
            Err(e) => Err(e),
        }
    }
}
