//! `set-external-id`: map accounts to an SSO provider's subject ids, keeping their other mappings.
//!
//! `GET /_synapse/admin/v2/users/<user_id>` -> `external_ids`, then `PUT` the same path with
//! `{"external_ids": [...]}`: the account's list with the row's pair in place of any other id for
//! that provider, and without the `--drop-provider` providers' mappings. One PUT per row, so a
//! move from an old provider to a new one is atomic per user: nobody is left with neither or both.
//!
//! Answers that matter: a missing account is a 404 on the GET (`failed`: the PUT would create
//! it); a list that is already so is `unchanged` and nothing is sent; a pair that another account
//! owns is 409 "External id is already in use." (`failed`, naming the owner, found through
//! `GET /_synapse/admin/v1/auth_providers/<provider>/users/<external_id>`). Rows for the same
//! user run one after the other (a read-modify-write race would lose a mapping).

use super::sso;
use super::{ADMIN_API_LOCAL, local_user};
use super::{Context, Op, Outcome, Planned, Users, classify, required};
use crate::executor::Attempt;
use crate::homeserver::{ExternalId, Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{Cell, EXTERNAL_ID, FieldDef, PROVIDER, Row, USER};

const FIELDS: &[FieldDef] = &[USER, PROVIDER, EXTERNAL_ID];

pub struct SetExternalId {
    /// `--drop-provider`: these providers' mappings go in the same PUT.
    drop: Vec<String>,
    users: Users,
}

pub struct SetTask {
    row: u64,
    user: UserRef,
    pair: ExternalId,
}

impl SetExternalId {
    /// `--drop-provider` is part of what a row wants: a rerun that adds it is new work.
    fn key(&self, fields: &[&str; 3]) -> String {
        let mut key = key(fields);
        for p in &self.drop {
            key.push_str(&format!(" drop={p}"));
        }
        key
    }

    /// `drop` are the `--drop-provider` values; a bad one is a usage error.
    pub fn new(drop: &[String]) -> Result<SetExternalId, String> {
        let mut checked: Vec<String> = vec![];
        for p in drop {
            let p = sso::provider(p.trim(), "--drop-provider")?;
            if !checked.contains(&p) {
                checked.push(p);
            }
        }
        Ok(SetExternalId {
            drop: checked,
            users: Users::default(),
        })
    }

    /// The list the account should have: its own, less the row's provider and the dropped ones,
    /// plus the row's pair.
    fn wanted(&self, before: &[ExternalId], pair: &ExternalId) -> Vec<ExternalId> {
        let mut after: Vec<ExternalId> = before
            .iter()
            .filter(|m| m.auth_provider != pair.auth_provider)
            .filter(|m| !self.drop.contains(&m.auth_provider))
            .cloned()
            .collect();
        after.push(pair.clone());
        after
    }

    /// A 409: the pair is another account's. Names that account so the admin can decide.
    async fn conflict(&self, hs: &Homeserver, e: HsError, pair: &ExternalId) -> Outcome {
        let mut outcome = Outcome::failed(&e);
        let what = sso::pair(pair);
        outcome.message = match hs
            .user_by_external_id(&pair.auth_provider, &pair.external_id)
            .await
        {
            Ok(owner) => format!(
                "{what} already belongs to {owner}: remove it there first \
                 (synbatch remove-external-id) or correct this row; nothing was changed"
            ),
            Err(lookup) => format!(
                "{what} is already in use by another account (looking up which one failed: \
                 {lookup}); nothing was changed"
            ),
        };
        outcome
    }
}

impl Op for SetExternalId {
    type Task = SetTask;

    fn name(&self) -> &'static str {
        "set-external-id"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["user", "provider", "external_id"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["user", "provider", "external_id"]
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<SetTask>>) {
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
        let fields = [user_text.as_str(), text(1), text(2)];
        let task = (|| {
            let user = user.clone()?;
            let provider = sso::provider(required(cells, 1, "provider")?, "provider")?;
            let external_id = required(cells, 2, "external_id")?.to_string();
            if self.drop.contains(&provider) {
                return Err(format!(
                    "provider `{provider}` is also given to --drop-provider: a row cannot both \
                     set and drop it"
                ));
            }
            Ok(SetTask {
                row: row.number,
                user,
                pair: ExternalId {
                    auth_provider: provider,
                    external_id,
                },
            })
        })();
        match task {
            Ok(task) => out.push(Planned {
                row: row.number,
                key: self.key(&fields),
                fields: fields.map(String::from).to_vec(),
                task: Ok(task),
            }),
            Err(why) => out.push(invalid(row.number, fields, why)),
        }
    }

    async fn attempt(&self, hs: &Homeserver, task: &SetTask) -> Attempt<Outcome> {
        let user_id = match self.users.resolve(hs, &task.user).await {
            Ok(id) => id,
            Err(attempt) => return attempt,
        };
        let before = match sso::current(hs, &user_id).await {
            Ok(list) => list,
            Err(attempt) => return attempt,
        };
        let after = self.wanted(&before, &task.pair);
        if sso::same(&before, &after) {
            let message = format!("already mapped: {}", sso::show(&before));
            return Attempt::Done(Outcome::unchanged(Some(200), message));
        }
        match sso::write(hs, &user_id, &before, &after).await {
            Ok(outcome) => Attempt::Done(outcome),
            Err(e @ HsError::Status { status: 409, .. }) => {
                Attempt::Done(self.conflict(hs, e, &task.pair).await)
            }
            Err(e) => classify(e),
        }
    }

    fn serial_key(&self, task: &SetTask) -> Option<String> {
        Some(task.user.as_str().to_string())
    }

    /// The account must exist and the pair must be free (or this account's already); prints
    /// the mapping before and after for the rows that would run.
    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &SetTask,
    ) -> Result<Option<String>, HsError> {
        let (user_id, before) = match sso::before_for_check(hs, &task.user).await? {
            Ok(found) => found,
            Err(why) => return Ok(Some(why)),
        };
        let pair = &task.pair;
        match hs
            .user_by_external_id(&pair.auth_provider, &pair.external_id)
            .await
        {
            Ok(owner) if owner != user_id => {
                return Ok(Some(format!(
                    "{} already belongs to {owner} (the PUT would get 409)",
                    sso::pair(pair)
                )));
            }
            Ok(_) | Err(HsError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let after = self.wanted(&before, pair);
        if sso::same(&before, &after) {
            println!(
                "row {}: {user_id}: unchanged {}",
                task.row,
                sso::show(&before)
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

    fn describe(&self, task: &SetTask) -> String {
        let mut change = format!("+{}", sso::pair(&task.pair));
        change.push_str(&format!(", -any other {} id", task.pair.auth_provider));
        for p in &self.drop {
            change.push_str(&format!(", -every {p} id"));
        }
        format!(
            "GET then PUT /_synapse/admin/v2/users/{} external_ids: {change}; others kept",
            task.user.as_str()
        )
    }
}

fn key(fields: &[&str; 3]) -> String {
    format!("set-external-id {} {} {}", fields[0], fields[1], fields[2])
        .trim_end()
        .to_string()
}

fn invalid(row: u64, fields: [&str; 3], why: String) -> Planned<SetTask> {
    Planned {
        row,
        key: if fields[0].is_empty() {
            super::unreadable_key("set-external-id", row)
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

    fn row(cells: [&str; 3]) -> Row {
        Row {
            number: 3,
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
        }
    }

    fn plan(op: &SetExternalId, cells: [&str; 3]) -> Planned<SetTask> {
        let ctx = Context {
            server_name: "x.org".into(),
            me: String::new(),
        };
        let mut out = vec![];
        op.plan(&ctx, &row(cells), &mut out);
        assert_eq!(out.len(), 1);
        out.pop().unwrap()
    }

    fn m(p: &str, id: &str) -> ExternalId {
        ExternalId {
            auth_provider: p.into(),
            external_id: id.into(),
        }
    }

    #[test]
    fn plans_rows_and_refuses_bad_ones() {
        let op = SetExternalId::new(&["oidc-old".into()]).unwrap();
        let p = plan(&op, ["alice", "oidc-new", "sub 1"]);
        // --drop-provider is part of what the row wants.
        assert_eq!(
            p.key,
            "set-external-id @alice:x.org oidc-new sub 1 drop=oidc-old"
        );
        assert!(p.task.is_ok());
        let why = plan(&op, ["@bob:other.org", "oidc-new", "1"])
            .task
            .err()
            .unwrap();
        assert!(why.contains("not on this server"), "{why}");
        let why = plan(&op, ["alice", "", "1"]).task.err().unwrap();
        assert!(why.contains("missing provider"), "{why}");
        let why = plan(&op, ["alice", "oidc-new", ""]).task.err().unwrap();
        assert!(why.contains("missing external_id"), "{why}");
        let why = plan(&op, ["alice", "oidc-old", "1"]).task.err().unwrap();
        assert!(why.contains("--drop-provider"), "{why}");
    }

    #[test]
    fn replaces_the_provider_drops_the_old_and_keeps_the_rest() {
        let op = SetExternalId::new(&["oidc-old".into()]).unwrap();
        let before = [m("oidc-old", "a"), m("saml", "s"), m("oidc-new", "stale")];
        let after = op.wanted(&before, &m("oidc-new", "b"));
        assert!(sso::same(&after, &[m("saml", "s"), m("oidc-new", "b")]));
        // Already so: the same list, so nothing is sent.
        let done = [m("saml", "s"), m("oidc-new", "b")];
        assert!(sso::same(&op.wanted(&done, &m("oidc-new", "b")), &done));
    }
}
