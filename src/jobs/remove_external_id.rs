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

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::Attempt;
use crate::exit::Exit;
use crate::homeserver::{ExternalId, Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{EXTERNAL_ID, FieldDef, PROVIDER, Row, USER};
use crate::job::Intent;
use crate::job::sso;
use crate::job::{Check, Context, Job, Outcome, Planned, Users, local_user_cell, optional, text};
use crate::results::Key;
use crate::rows::Source;

/// Remove SSO mappings from users, keeping the rest (columns: user, [provider, external_id];
/// or --all-users --provider P)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Remove SSO mappings from accounts through the admin API (GET, then PUT \
        /_synapse/admin/v2/users/<user_id> with the rest of the external_ids).\n\n\
        Columns: user, provider and optionally external_id (then only that one id goes). \
        --provider P names the provider for every row, so the input needs only a user \
        column: the output of `synbatch export-users` will do. --all-users --provider P \
        takes every account of the server (deactivated and locked ones included) as the \
        input: the whole-server sweep.\n\n\
        An account with nothing to remove is `unchanged`; a missing account is `failed` \
        (never created). This cannot be undone (the results file records each account's \
        mappings before the change): synbatch asks first on a terminal, and needs --yes \
        anywhere else.",
    after_help = "Examples:\n  \
        synbatch remove-external-id --all-users --provider oidc-old --dry-run\n  \
        synbatch remove-external-id --all-users --provider oidc-old --yes\n  \
        synbatch export-users --provider oidc-old -o old.csv\n  \
        synbatch remove-external-id old.csv --provider oidc-old --yes\n  \
        synbatch remove-external-id rows.csv"
)]
#[command(mut_arg("input", |a| a.required(false).required_unless_present("all_users")))]
pub struct Args {
    /// The provider whose mappings go, for every row (the input then needs only a user column)
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,

    /// Take every account of the server (deactivated and locked ones included) as the input
    #[arg(long, requires = "provider", conflicts_with = "input")]
    pub all_users: bool,

    /// Accounts per page of the account list, with --all-users
    #[arg(long, hide = true, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,

    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    let job = RemoveExternalId::new(args.provider.as_deref()).map_err(Exit::Usage)?;
    if !args.all_users {
        return crate::rows::run(job, &args.rows).await;
    }
    let what = format!(
        "remove every {} mapping from every account of {}",
        args.provider.as_deref().unwrap_or_default(),
        args.rows
            .server
            .homeserver
            .as_deref()
            .unwrap_or("the homeserver")
    );
    let source = Source::Accounts {
        page_size: args.page_size,
        what,
    };
    crate::rows::run_from(job, &args.rows, source).await
}

const FIELDS: &[FieldDef] = &[USER, PROVIDER, EXTERNAL_ID];

pub struct RemoveExternalId {
    /// `--provider`: the provider of every row.
    provider: Option<String>,
    users: Users,
}

pub struct RemoveTask {
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

impl Job for RemoveExternalId {
    type Task = RemoveTask;

    fn name(&self) -> &'static str {
        NAME
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
        let provider_text = self.provider.as_deref().unwrap_or(text(1)).to_string();
        let fields = [user_text.as_str(), provider_text.as_str(), text(2)];
        let task = (|| {
            let user = user.clone()?;
            let cell = optional(cells, 1, "provider")?;
            let provider = match (&self.provider, cell) {
                (Some(option), Some(cell)) if cell != option => {
                    return Err(format!(
                        "provider `{}` differs from --provider {option}: leave the cell \
                         empty, or drop --provider",
                        crate::input::quote(cell)
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
                user,
                provider,
                external_id: optional(cells, 2, "external_id")?.map(String::from),
            })
        })();
        match task {
            Ok(task) => out.push(Planned {
                row: row.number,
                key: Key::new(NAME, fields),
                fields: fields.map(String::from).to_vec(),
                task: Ok(task),
            }),
            Err(why) => out.push(Planned::invalid(NAME, row.number, &fields, why)),
        }
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &RemoveTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let user_id = self.users.resolve(hs, &task.user).await?;
        let before = sso::current(hs, &user_id).await?;
        let after: Vec<ExternalId> = before
            .iter()
            .filter(|m| !task.matches(m))
            .cloned()
            .collect();
        if after.len() == before.len() {
            if intent.in_doubt() {
                return Ok(intent.done_earlier(Some(200), &sso::show(&after)));
            }
            let message = format!("no {} to remove: {}", task.what(), sso::show(&before));
            return Ok(Outcome::unchanged(Some(200), message));
        }
        Ok(sso::write(hs, &user_id, &before, &after, intent).await??)
    }

    fn serial_key(&self, task: &RemoveTask) -> Option<String> {
        Some(task.user.as_str().to_string())
    }

    /// The account must exist; a row that would run notes the mapping before and after.
    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &RemoveTask,
    ) -> Result<Check, HsError> {
        let (user_id, before) = match sso::before_for_check(hs, &task.user).await? {
            Ok(found) => found,
            Err(why) => return Ok(Check::Fails(why)),
        };
        let after: Vec<ExternalId> = before
            .iter()
            .filter(|m| !task.matches(m))
            .cloned()
            .collect();
        Ok(Check::Runs(Some(if after.len() == before.len() {
            format!(
                "{user_id}: unchanged {} (no {})",
                sso::show(&before),
                task.what()
            )
        } else {
            format!("{user_id}: {} -> {}", sso::show(&before), sso::show(&after))
        })))
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

const NAME: &str = "remove-external-id";

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(op: &RemoveExternalId, cells: [&str; 3]) -> Planned<RemoveTask> {
        crate::job::plan_row(op, "x.org", &Row::of(2, &cells))
            .pop()
            .unwrap()
    }

    #[test]
    fn provider_from_the_option_or_the_row() {
        let by_option = RemoveExternalId::new(Some("oidc-old")).unwrap();
        let p = plan(&by_option, ["alice", "", ""]);
        assert_eq!(p.key.as_str(), "remove-external-id @alice:x.org oidc-old");
        assert!(p.task.is_ok());
        let why = plan(&by_option, ["alice", "saml", ""]).task.err().unwrap();
        assert!(why.contains("differs from --provider"), "{why}");

        let by_row = RemoveExternalId::new(None).unwrap();
        let p = plan(&by_row, ["@a:x.org", "saml", "u1"]);
        assert_eq!(p.key.as_str(), "remove-external-id @a:x.org saml u1");
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
