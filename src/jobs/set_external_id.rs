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

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::Attempt;
use crate::exit::Exit;
use crate::homeserver::{ExternalId, Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{EXTERNAL_ID, FieldDef, PROVIDER, Row, USER};
use crate::job::Intent;
use crate::job::sso;
use crate::job::{Check, Context, Job, Outcome, Planned, Users, local_user_cell, required, text};
use crate::results::{Cause, Key};

/// Map users to an SSO provider's ids, keeping their other mappings (columns: user, provider,
/// external_id)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Map accounts to an SSO provider's subject ids through the admin API (GET, \
        then PUT /_synapse/admin/v2/users/<user_id> with the recomputed external_ids).\n\n\
        Columns: user (a local user id, localpart or email address), provider (as Synapse \
        stores it: oidc-<idp_id> for OIDC, saml, cas) and external_id (the subject id). The \
        row's pair replaces any other id the account has for that provider; its other \
        mappings are kept. With --drop-provider OLD, OLD's mappings go in the same PUT: the \
        switch from OLD to the new provider is one change per account, so nobody is ever \
        left with neither or both.\n\n\
        An account that does not exist is `failed` (never created). An account already \
        mapped exactly so is `unchanged`. A pair that another account owns (409) is \
        `failed`, and the message names that account. Rows for the same account run one \
        after the other, so they all take effect.",
    after_help = "Examples:\n  \
        synbatch set-external-id mapping.csv --drop-provider oidc-old --dry-run --check\n  \
        synbatch set-external-id mapping.csv --drop-provider oidc-old\n  \
        synbatch set-external-id mapping.csv --retry-failed"
)]
pub struct Args {
    /// Also remove this provider's mappings in the same PUT (repeatable): the switch from OLD
    /// to the row's provider is one change per account
    #[arg(long = "drop-provider", value_name = "OLD")]
    pub drop_provider: Vec<String>,

    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    let job = SetExternalId::new(&args.drop_provider).map_err(Exit::Usage)?;
    crate::rows::run(job, &args.rows).await
}

const FIELDS: &[FieldDef] = &[USER, PROVIDER, EXTERNAL_ID];

pub struct SetExternalId {
    /// `--drop-provider`: these providers' mappings go in the same PUT.
    drop: Vec<String>,
    users: Users,
}

pub struct SetTask {
    user: UserRef,
    pair: ExternalId,
}

impl SetExternalId {
    /// `--drop-provider` is part of what a row wants: a rerun that adds it is new work.
    fn key(&self, fields: &[&str; 3]) -> Key {
        let drop = self.drop.iter().map(|p| format!("drop={p}"));
        let parts: Vec<String> = fields.iter().map(|f| f.to_string()).chain(drop).collect();
        Key::new(NAME, parts.iter().map(String::as_str))
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
        let what = sso::pair(pair);
        let message = match hs
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
        Outcome::failed(&e)
            .because(Cause::ExternalIdInUse)
            .saying(message)
    }
}

impl Job for SetExternalId {
    type Task = SetTask;

    fn name(&self) -> &'static str {
        NAME
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
                out.push(Planned::invalid(
                    NAME,
                    row.number,
                    &["", "", ""],
                    why.clone(),
                ));
                return;
            }
        };
        let text = |at: usize| text(cells, at);
        let (user, user_text) = local_user_cell(cells, ctx);
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
            Err(why) => out.push(Planned::invalid(NAME, row.number, &fields, why)),
        }
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &SetTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let user_id = self.users.resolve(hs, &task.user).await?;
        let before = sso::current(hs, &user_id).await?;
        let after = self.wanted(&before, &task.pair);
        if sso::same(&before, &after) {
            if intent.in_doubt() {
                return Ok(intent.done_earlier(Some(200), &sso::show(&after)));
            }
            let message = format!("already mapped: {}", sso::show(&before));
            return Ok(Outcome::unchanged(Some(200), message));
        }
        match sso::write(hs, &user_id, &before, &after, intent).await? {
            Ok(outcome) => Ok(outcome),
            Err(e @ HsError::Status { status: 409, .. }) => {
                Ok(self.conflict(hs, e, &task.pair).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn serial_key(&self, task: &SetTask) -> Option<String> {
        Some(task.user.as_str().to_string())
    }

    /// The account must exist and the pair must be free (or this account's already); a row
    /// that would run notes the mapping before and after.
    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &SetTask,
    ) -> Result<Check, HsError> {
        let (user_id, before) = match sso::before_for_check(hs, &task.user).await? {
            Ok(found) => found,
            Err(why) => return Ok(Check::Fails(why)),
        };
        let pair = &task.pair;
        match hs
            .user_by_external_id(&pair.auth_provider, &pair.external_id)
            .await
        {
            Ok(owner) if owner != user_id => {
                return Ok(Check::Fails(format!(
                    "{} already belongs to {owner} (the PUT would get 409)",
                    sso::pair(pair)
                )));
            }
            Ok(_) | Err(HsError::Status { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let after = self.wanted(&before, pair);
        Ok(Check::Runs(Some(if sso::same(&before, &after) {
            format!("{user_id}: unchanged {}", sso::show(&before))
        } else {
            format!("{user_id}: {} -> {}", sso::show(&before), sso::show(&after))
        })))
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

const NAME: &str = "set-external-id";

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(op: &SetExternalId, cells: [&str; 3]) -> Planned<SetTask> {
        let mut out = crate::job::plan_row(op, "x.org", &Row::of(3, &cells));
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
            p.key.as_str(),
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
