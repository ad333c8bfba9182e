//! The Synapse admin API for user accounts: `/_synapse/admin/v2/users` and its lookups.

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Homeserver, HsError};

impl Homeserver {
    /// `GET /_synapse/admin/v1/users/<user_id>/admin`: whether a user is a server admin.
    /// Asked with a non-admin token it answers 403 "You are not a server admin".
    pub async fn is_admin(&self, user_id: &str) -> Result<bool, HsError> {
        #[derive(Deserialize)]
        struct Admin {
            admin: bool,
        }
        let answer: Admin = self
            .call_as(
                Method::GET,
                &["_synapse", "admin", "v1", "users", user_id, "admin"],
                None,
            )
            .await?;
        Ok(answer.admin)
    }

    /// `GET /_synapse/admin/v1/threepid/email/users/<address>`: the user an email belongs to.
    pub async fn user_by_email(&self, address: &str) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Found {
            user_id: String,
        }
        let found: Found = self
            .call_as(
                Method::GET,
                &[
                    "_synapse", "admin", "v1", "threepid", "email", "users", address,
                ],
                None,
            )
            .await?;
        Ok(found.user_id)
    }

    /// `GET /_synapse/admin/v2/users/<user_id>`: the account, or 404.
    pub async fn user(&self, user_id: &str) -> Result<User, HsError> {
        self.call_as(
            Method::GET,
            &["_synapse", "admin", "v2", "users", user_id],
            None,
        )
        .await
    }

    /// `PUT /_synapse/admin/v2/users/<user_id>`: creates the account (201) or modifies it (200).
    /// Beware: a PUT for a user that does not exist creates it, and `threepids` and
    /// `external_ids` replace the whole list.
    pub async fn put_user(&self, user_id: &str, body: &Value) -> Result<u16, HsError> {
        let path = ["_synapse", "admin", "v2", "users", user_id];
        let (status, _) = self.call(Method::PUT, &path, &[], Some(body)).await?;
        Ok(status)
    }

    /// `POST /_synapse/admin/v1/deactivate/<user_id>` `{"erase"}`.
    pub async fn deactivate(&self, user_id: &str, erase: bool) -> Result<(), HsError> {
        let body = json!({ "erase": erase });
        let path = ["_synapse", "admin", "v1", "deactivate", user_id];
        self.call(Method::POST, &path, &[], Some(&body)).await?;
        Ok(())
    }

    /// `GET /_synapse/admin/v1/auth_providers/<provider>/users/<external_id>`: who owns a mapping.
    pub async fn user_by_external_id(
        &self,
        provider: &str,
        external_id: &str,
    ) -> Result<String, HsError> {
        #[derive(Deserialize)]
        struct Found {
            user_id: String,
        }
        let path = [
            "_synapse",
            "admin",
            "v1",
            "auth_providers",
            provider,
            "users",
            external_id,
        ];
        let found: Found = self.call_as(Method::GET, &path, None).await?;
        Ok(found.user_id)
    }

    /// `GET /_synapse/admin/v2/users?from=&limit=&...`: one page of the account list.
    pub async fn users_page(&self, query: &UserQuery, from: &str) -> Result<UserPage, HsError> {
        let limit = query.limit.max(1).to_string(); // limit=0 pages forever
        let mut params: Vec<(&str, &str)> = vec![("from", from), ("limit", &limit)];
        let flag = |b: bool| if b { "true" } else { "false" };
        params.push(("deactivated", flag(query.deactivated)));
        params.push(("guests", flag(query.guests)));
        // Synapse leaves locked accounts out unless asked: they are accounts all the same.
        params.push(("locked", "true"));
        if query.admins_only {
            params.push(("admins", "true"));
        }
        if let Some(name) = &query.name {
            params.push(("name", name));
        }
        let path = ["_synapse", "admin", "v2", "users"];
        let (status, value) = self.call(Method::GET, &path, &params, None).await?;
        serde_json::from_value(value).map_err(|e| HsError::Decode {
            status,
            detail: e.to_string(),
        })
    }
}

/// An account as `GET /_synapse/admin/v2/users/<user_id>` shows it (the fields synbatch uses).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub admin: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub deactivated: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub erased: bool,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub threepids: Vec<Threepid>,
    #[serde(default)]
    pub external_ids: Vec<ExternalId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Threepid {
    pub medium: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExternalId {
    pub auth_provider: String,
    pub external_id: String,
}

/// Filters of the account list.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub limit: u32,
    pub deactivated: bool,
    pub guests: bool,
    pub admins_only: bool,
    pub name: Option<String>,
}

/// One page of `GET /_synapse/admin/v2/users`.
#[derive(Debug, Deserialize)]
pub struct UserPage {
    pub users: Vec<ListedUser>,
    #[serde(default)]
    pub total: u64,
    /// Absent on the last page. A string here, an integer in some other admin lists.
    #[serde(default, deserialize_with = "lenient_token")]
    pub next_token: Option<String>,
}

/// An entry of the account list: no external ids or threepids (those need a GET per user), and
/// `creation_ts` in milliseconds (the single-user GET gives seconds).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedUser {
    pub name: String,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub admin: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub deactivated: bool,
    #[serde(default)]
    pub user_type: Option<String>,
    #[serde(default)]
    pub creation_ts: Option<i64>,
}

/// Synapse has sent `admin` and `deactivated` as booleans and as 0/1 over the years.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
        _ => false,
    })
}

fn lenient_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

impl Homeserver {
    /// `PUT /_synapse/admin/v2/users/<user_id>` with only `{"external_ids": [...]}`: replaces the
    /// account's whole list of SSO mappings, nothing else. Call it only for an account that a GET
    /// has just found: the same PUT for a missing account creates it. A pair that another
    /// account owns is refused with 409 "External id is already in use." and changes nothing.
    pub async fn set_external_ids(
        &self,
        user_id: &str,
        ids: &[ExternalId],
    ) -> Result<u16, HsError> {
        self.put_user(user_id, &json!({ "external_ids": ids }))
            .await
    }
}
