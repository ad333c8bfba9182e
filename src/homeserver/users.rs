//! The Synapse admin API for user accounts: `/_synapse/admin/v2/users` and its lookups.

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Homeserver, HsError};

impl Homeserver {
    /// `GET /_synapse/admin/v1/users/<user_id>/admin`: whether a user is a server admin.
    /// Asked with a non-admin token it answers 403 "You are not a server admin". Synapse does
    /// not serve it when it delegates authentication to MAS (404 `M_UNRECOGNIZED`).
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

    /// `GET /_synapse/admin/v2/users/<user_id>`: the account, or 404. An answer without the
    /// account's `name` (this one), `external_ids` or `threepids` is `HsError::Decode`: jobs
    /// write those lists back whole, so a missing one must never read as empty.
    pub async fn user(&self, user_id: &str) -> Result<User, HsError> {
        let path = ["_synapse", "admin", "v2", "users", user_id];
        let (status, value) = self.call(Method::GET, &path, &[], None).await?;
        User::read(user_id, status, value)
    }

    /// `PUT /_synapse/admin/v2/users/<user_id>`: creates the account (201) or modifies it (200).
    /// Beware: a PUT for a user that does not exist creates it, and `threepids` and
    /// `external_ids` replace the whole list. Synapse answers with the account: an answer that
    /// is not an object naming `user_id` is `HsError::Decode`.
    pub async fn put_user(&self, user_id: &str, body: &Value) -> Result<u16, HsError> {
        let path = ["_synapse", "admin", "v2", "users", user_id];
        let (status, value) = self.call(Method::PUT, &path, &[], Some(body)).await?;
        check_name(user_id, status, &value)?;
        Ok(status)
    }

    /// `POST /_synapse/admin/v1/deactivate/<user_id>` `{"erase"}`: Synapse answers a JSON object
    /// (`{"id_server_unbind_result": ...}`); anything else is `HsError::Decode`.
    pub async fn deactivate(&self, user_id: &str, erase: bool) -> Result<(), HsError> {
        let body = json!({ "erase": erase });
        let path = ["_synapse", "admin", "v1", "deactivate", user_id];
        let (status, value) = self.call(Method::POST, &path, &[], Some(&body)).await?;
        if !value.is_object() {
            return Err(HsError::Decode {
                status,
                detail: format!(
                    "deactivating {user_id} got {} where Synapse answers a JSON object: the \
                     account may not be deactivated; check it, and --homeserver",
                    kind(&value)
                ),
            });
        }
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
        // Under MAS, Synapse answers 400 to `guests=true`, and to no `guests` at all (it counts
        // as true): there are no guest accounts there.
        params.push(("guests", flag(query.guests && !self.delegated())));
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
        super::decode(status, value)
    }
}

/// What a JSON value is, in words, for a message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty answer",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An answer about one account must be a JSON object whose `name` is that account.
fn check_name(user_id: &str, status: u16, value: &Value) -> Result<(), HsError> {
    let detail = match value.get("name") {
        Some(Value::String(name)) if name == user_id => return Ok(()),
        Some(Value::String(name)) => {
            format!("asked about {user_id}, the answer is about `{name}` (its `name`)")
        }
        _ if !value.is_object() => format!(
            "asked about {user_id}, got {} where Synapse answers the account as a JSON object",
            kind(value)
        ),
        _ => {
            format!("the answer about {user_id} has no `name` (the account's user id, as a string)")
        }
    };
    Err(HsError::Decode { status, detail })
}

/// An account as `GET /_synapse/admin/v2/users/<user_id>` shows it (the fields synbatch uses).
/// `threepids` and `external_ids` have no default: jobs decide on them and write the lists back
/// whole, so an answer without them is refused, never read as empty. (`Homeserver::user` also
/// checks that the answer's `name` is the account asked for.)
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
    pub threepids: Vec<Threepid>,
    pub external_ids: Vec<ExternalId>,
}

impl User {
    /// Reads the answer about `user_id`: it must name that account and carry both lists.
    fn read(user_id: &str, status: u16, value: Value) -> Result<User, HsError> {
        check_name(user_id, status, &value)?;
        for list in ["external_ids", "threepids"] {
            let why = match value.get(list) {
                Some(Value::Array(_)) => continue,
                None => "has no".to_string(),
                Some(other) => format!("has {} for", kind(other)),
            };
            return Err(HsError::Decode {
                status,
                detail: format!(
                    "the account {user_id} {why} `{list}` (a list in Synapse's answer): synbatch \
                     will not decide on an account it cannot read whole; nothing was changed"
                ),
            });
        }
        serde_json::from_value(value).map_err(|e| HsError::Decode {
            status,
            detail: format!("the account {user_id}: {e}"),
        })
    }
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
    /// Milliseconds; null for an account never seen (or not since Synapse began recording).
    #[serde(default)]
    pub last_seen_ts: Option<i64>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub locked: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /_synapse/admin/v2/users/@alice:example.org` on Synapse 1.163 (trimmed).
    fn synapse_user() -> Value {
        json!({
            "name": "@alice:example.org", "admin": 0, "deactivated": false, "locked": false,
            "creation_ts": 1796000832, "user_type": null, "displayname": "Alice",
            "threepids": [{"medium": "email", "address": "alice@example.org",
                           "added_at": 1, "validated_at": 1}],
            "external_ids": [{"auth_provider": "oidc-a", "external_id": "1"}],
            "erased": false
        })
    }

    fn read(value: Value) -> Result<User, HsError> {
        User::read("@alice:example.org", 200, value)
    }

    fn decode_detail(e: HsError) -> String {
        match e {
            HsError::Decode {
                status: 200,
                detail,
            } => detail,
            other => panic!("not a Decode: {other:?}"),
        }
    }

    #[test]
    fn a_whole_account_is_read() {
        let user = read(synapse_user()).unwrap();
        assert_eq!(user.displayname.as_deref(), Some("Alice"));
        assert_eq!(user.threepids[0].address, "alice@example.org");
        assert_eq!(
            user.external_ids,
            [ExternalId {
                auth_provider: "oidc-a".into(),
                external_id: "1".into()
            }]
        );
        let mut empty = synapse_user();
        empty["external_ids"] = json!([]);
        empty["threepids"] = json!([]);
        let user = read(empty).unwrap();
        assert!(user.external_ids.is_empty() && user.threepids.is_empty());
    }

    #[test]
    fn a_missing_list_is_refused_never_read_as_empty() {
        for list in ["external_ids", "threepids"] {
            let mut without = synapse_user();
            without.as_object_mut().unwrap().remove(list);
            let detail = decode_detail(read(without).unwrap_err());
            assert!(detail.contains(list), "{detail}");
            assert!(detail.contains("has no"), "{detail}");
            for wrong in [json!(null), json!({}), json!("[]")] {
                let mut bad = synapse_user();
                bad[list] = wrong.clone();
                let detail = decode_detail(read(bad).unwrap_err());
                assert!(detail.contains(list), "{wrong}: {detail}");
            }
        }
        let mut bad_entry = synapse_user();
        bad_entry["external_ids"] = json!([{"auth_provider": "oidc-a"}]);
        let detail = decode_detail(read(bad_entry).unwrap_err());
        assert!(detail.contains("external_id"), "{detail}");
    }

    #[test]
    fn the_answer_must_be_about_the_account_asked_for() {
        let mut without = synapse_user();
        without.as_object_mut().unwrap().remove("name");
        let detail = decode_detail(read(without).unwrap_err());
        assert!(detail.contains("`name`"), "{detail}");
        let mut other = synapse_user();
        other["name"] = json!("@mallory:example.org");
        let detail = decode_detail(read(other).unwrap_err());
        assert!(detail.contains("@mallory:example.org"), "{detail}");
        for not_object in [Value::Null, json!([]), json!("ok")] {
            let detail = decode_detail(read(not_object.clone()).unwrap_err());
            assert!(detail.contains("JSON object"), "{not_object}: {detail}");
        }
    }

    /// A homeserver whose PUT and deactivate answer `answer`.
    async fn answering(answer: wiremock::ResponseTemplate) -> (wiremock::MockServer, Homeserver) {
        use wiremock::matchers::any;
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(any())
            .respond_with(answer)
            .mount(&server)
            .await;
        let hs = Homeserver::new(
            server.uri().parse().unwrap(),
            &super::super::Token::new("syt_unit_test_token_0123".into()),
            std::time::Duration::from_secs(5),
            1,
        )
        .unwrap();
        (server, hs)
    }

    #[tokio::test]
    async fn put_and_deactivate_check_their_answers() {
        use wiremock::ResponseTemplate;
        let user = "@alice:example.org";
        let body = json!({"displayname": "A"});
        let (_s, hs) = answering(ResponseTemplate::new(201).set_body_json(synapse_user())).await;
        assert_eq!(hs.put_user(user, &body).await.unwrap(), 201);
        let (_s, hs) = answering(ResponseTemplate::new(200).set_body_json(json!({}))).await;
        assert!(matches!(
            hs.put_user(user, &body).await,
            Err(HsError::Decode { status: 200, .. })
        ));
        assert!(hs.deactivate(user, false).await.is_ok());
        for not_object in [
            ResponseTemplate::new(200),
            ResponseTemplate::new(200).set_body_json(json!("ok")),
            ResponseTemplate::new(200).set_body_json(json!([])),
        ] {
            let (_s, hs) = answering(not_object).await;
            let e = hs.deactivate(user, false).await.unwrap_err();
            assert!(matches!(e, HsError::Decode { status: 200, .. }), "{e:?}");
            assert!(e.to_string().contains("JSON object"), "{e}");
            assert!(matches!(
                hs.put_user(user, &body).await,
                Err(HsError::Decode { status: 200, .. })
            ));
        }
    }

    #[test]
    fn a_put_answer_names_the_account() {
        let user = "@alice:example.org";
        assert!(check_name(user, 201, &synapse_user()).is_ok());
        assert!(check_name(user, 200, &json!({"name": user})).is_ok());
        for bad in [
            Value::Null,
            json!({}),
            json!({"name": "@bob:example.org"}),
            json!({"name": 5}),
            json!([user]),
        ] {
            let e = check_name(user, 200, &bad).unwrap_err();
            assert!(
                matches!(e, HsError::Decode { status: 200, .. }),
                "{bad}: {e:?}"
            );
            assert!(e.to_string().contains(user), "{bad}: {e}");
        }
    }
}
