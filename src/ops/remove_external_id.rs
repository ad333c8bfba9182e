//! `remove-external-id`: take an SSO provider's mappings (or one of them) off accounts, keeping
//! the rest.
//!
//! `GET /_synapse/admin/v2/users/<user_id>` -> `external_ids`, then, if anything matches, `PUT`
//! the same path with `{"external_ids": [...]}`: the list without the provider's mappings (or
//! without just the row's `external_id`). Nothing to remove -> `unchanged`, and nothing is sent.
//! A missing account is a 404 on the GET: `failed`, never created by the PUT.
//!
//! `--provider P` names the provider for every row, so the input needs only a user column: the
//! output of `synbatch export-users` will do, and so will `--all-users`, which takes the
//! server's whole account list (`GET /_synapse/admin/v2/users`, every page, deactivated accounts
//! included) as the input. Rows for the same user run one after the other.

use super::sso;
use super::{ADMIN_API_LOCAL, local_user};
use super::{Context, Op, Outcome, Planned, Users, classify, optional, required};
use crate::executor::Attempt;
use crate::homeserver::{ExternalId, Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{Cell, EXTERNAL_ID, FieldDef, PROVIDER, Row, USER};

const FIELDS: &[FieldDef] = &[USER, PROVIDER, EXTERNAL_ID];

pub struct RemoveExternalId {
    /// `--provider`: the provider of every row.
    provider: Option<String>,
    users: Users,
}

pub struct RemoveTask {
    row: u64,
    user: UserRef,
    provider: String,
    /// Only this id; `None` removes every mapping of the provider.
    external_id: Option<String>,
}

impl RemoveTask {
    fn matches(&self, m: &ExternalId) -> bool {
        m.auth_provider == self.provider
            && self
                .external_id
                .as_ref()
                .is_none_or(|id| *id == m.external_id)
    }

    fn what(&self) -> String {
        match &self.external_id {
            Some(id) => format!("mapping {}:{id}", self.provider),
            None => format!("{} mapping", self.provider),
        }
    }
}

impl RemoveExternalId {
    /// `provider` is the `--provider` value; a bad one is a usage error.
    pub fn new(provider: Option<&str>) -> Result<RemoveExternalId, String> {
        let provider = provider
            .map(|p| sso::provider(p.trim(), "--provider"))
            .transpose()?;
        Ok(RemoveExternalId {
            provider,
            users: Users::default(),
        })
    }
}

impl Op for RemoveExternalId {
    type Task = RemoveTask;

    fn name(&self) -> &'static str {
        "remove-external-id"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        match self.provider {
            Some(_) => vec!["user"],
            None => vec!["user", "provider"],
        }
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["user", "provider", "external_id"]
    }

    fn destructive(&self) -> bool {
        true
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<RemoveTask>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                out.push(invalid(row.number, ["", "", ""], why.clone()));
                return;
            }
        };
        let text = |at: usize| match &cells[at] {
            Cell::Text(t) => t.as_str(),
            _ => "",
        };
        let user = required(cells, 0, "user").and_then(|u| local_user(u, ctx, ADMIN_API_LOCAL));
        let user_text = user
            .as_ref()
            .map(|u| u.as_str().to_string())
            .unwrap_or_else(|_| text(0).to_string());
        let provider_text = self.provider.as_deref().unwrap_or(text(1)).to_string();
        let fields = [user_text.as_str(), provider_text.as_str(), text(2)];
        let task = (|| {
            let user = user.clone()?;
            let cell = optional(cells, 1, "provider")?;
            let provider = match (&self.provider, cell) {
                (Some(option), Some(cell)) if cell != option => {
                    return Err(format!(
                        "provider `{cell}` differs from --provider {option}: leave the cell \
                         empty, or drop --provider"
                    ));
                }
                (Some(option), _) => option.clone(),
                (None, Some(cell)) => sso::provider(cell, "provider")?,
                (None, None) => {
                    return Err(
                        "missing provider: the cell is empty and no --provider was given".into(),
                    );
                }
            };
            Ok(RemoveTask {
                row: row.number,
                user,
                provider,
                external_id: optional(cells, 2, "external_id")?.map(String::from),
            })
        })();
        match task {
            Ok(task) => out.push(Planned {
                row: row.number,
                key: key(&fields),
                fields: fields.map(String::from).to_vec(),
                task: Ok(task),
            }),
            Err(why) => out.push(invalid(row.number, fields, why)),
        }
    }

    async fn attempt(&self, hs: &Homeserver, task: &RemoveTask) -> Attempt<Outcome> {
        let user_id = match self.users.resolve(hs, &task.user).await {
            Ok(id) => id,
            Err(attempt) => return attempt,
        };
        let before = match sso::current(hs, &user_id).await {
            Ok(list) => list,
            Err(attempt) => return attempt,
        };
        let after: Vec<ExternalId> = before
            .iter()
            .filter(|m| !task.matches(m))
            .cloned()
            .collect();
        if after.len() == before.len() {
            let message = format!("no {} to remove: {}", task.what(), sso::show(&before));
            return Attempt::Done(Outcome::unchanged(Some(200), message));
        }
        match sso::write(hs, &user_id, &before, &after).await {
            Ok(outcome) => Attempt::Done(outcome),
            Err(e) => classify(e),
        }
    }

    fn serial_key(&self, task: &RemoveTask) -> Option<String> {
        Some(task.user.as_str().to_string())
    }

    /// The account must exist; prints the mapping before and after for the rows that would run.
    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &RemoveTask,
    ) -> Result<Option<String>, HsError> {
        let (user_id, before) = match sso::before_for_check(hs, &task.user).await? {
            Ok(found) => found,
            Err(why) => return Ok(Some(why)),
        };
        let after: Vec<ExternalId> = before
            .iter()
            .filter(|m| !task.matches(m))
            .cloned()
            .collect();
        if after.len() == before.len() {
            println!(
                "row {}: {user_id}: unchanged {} (no {})",
                task.row,
                sso::show(&before),
                task.what()
            );
        } else {
            println!(
                "row {}: {user_id}: {} -> {}",
                task.row,
                sso::show(&before),
                sso::show(&after)
            );
        }
        Ok(None)
    }

    fn describe(&self, task: &RemoveTask) -> String {
        let what = match &task.external_id {
            Some(id) => format!("-{}:{id}", task.provider),
            None => format!("-every {} id", task.provider),
        };
        format!(
            "GET then PUT /_synapse/admin/v2/users/{} external_ids: {what}; others kept",
            task.user.as_str()
        )
    }
}

fn key(fields: &[&str; 3]) -> String {
    format!(
        "remove-external-id {} {} {}",
        fields[0], fields[1], fields[2]
    )
    .trim_end()
    .to_string()
}

fn invalid(row: u64, fields: [&str; 3], why: String) -> Planned<RemoveTask> {
    Planned {
        row,
        key: if fields[0].is_empty() {
            super::unreadable_key("remove-external-id", row)
        } else {
            key(&fields)
        },
        fields: fields.map(String::from).to_vec(),
        task: Err(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(op: &RemoveExternalId, cells: [&str; 3]) -> Planned<RemoveTask> {
        let ctx = Context {
            server_name: "x.org".into(),
            me: String::new(),
        };
        let row = Row {
            number: 2,
            cells: Ok(cells
                .iter()
                .map(|s| {
                    if s.is_empty() {
                        Cell::Empty
                    } else {
                        Cell::Text(s.to_string())
                    }
                })
                .collect()),
        };
        let mut out = vec![];
        op.plan(&ctx, &row, &mut out);
        out.pop().unwrap()
    }

    #[test]
    fn provider_from_the_option_or_the_row() {
        let by_option = RemoveExternalId::new(Some("oidc-old")).unwrap();
        let p = plan(&by_option, ["alice", "", ""]);
        assert_eq!(p.key, "remove-external-id @alice:x.org oidc-old");
        assert!(p.task.is_ok());
        let why = plan(&by_option, ["alice", "saml", ""]).task.err().unwrap();
        assert!(why.contains("differs from --provider"), "{why}");

        let by_row = RemoveExternalId::new(None).unwrap();
        let p = plan(&by_row, ["@a:x.org", "saml", "u1"]);
        assert_eq!(p.key, "remove-external-id @a:x.org saml u1");
        let why = plan(&by_row, ["@a:x.org", "", ""]).task.err().unwrap();
        assert!(why.contains("missing provider"), "{why}");
    }

    #[test]
    fn removes_one_id_or_the_whole_provider() {
        let m = |p: &str, id: &str| ExternalId {
            auth_provider: p.into(),
            external_id: id.into(),
        };
        let task = |id: Option<&str>| RemoveTask {
            row: 1,
            user: UserRef::Mxid("@a:x".into()),
            provider: "p".into(),
            external_id: id.map(String::from),
        };
        assert!(task(None).matches(&m("p", "1")));
        assert!(!task(None).matches(&m("q", "1")));
        assert!(task(Some("1")).matches(&m("p", "1")));
        assert!(!task(Some("1")).matches(&m("p", "2")));
    }
}
