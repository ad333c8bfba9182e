//! `deactivate`: close accounts with the admin API.
//!
//! `POST /_synapse/admin/v1/deactivate/<user_id>` `{"erase": bool}` -> 200. The account can no
//! longer log in; its SSO mappings and media stay. With `erase`, Synapse also forgets the
//! display name and avatar, and hides the user's messages from users who join rooms later (GDPR
//! erasure).
//!
//! The account is read first (`GET /_synapse/admin/v2/users/<user_id>`): an unknown user is
//! `failed` ("no such user"), an account already deactivated (and erased, when erasure is asked
//! for) is `unchanged`. Cannot be undone: the job asks for confirmation, or needs `--yes`.

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{ERASE, FieldDef, Row, USER};
use crate::job::{
    ADMIN_API_LOCAL, Check, Context, Intent, Job, Outcome, Planned, Users, boolean, local_user,
    optional, required, text,
};
use crate::results::{Cause, Key};

/// Deactivate accounts (admin API; columns: user, [erase])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Deactivate accounts through the admin API \
        (POST /_synapse/admin/v1/deactivate/<user_id>).\n\n\
        Columns: user, and optionally erase (true/false) to override --erase for that row. \
        With erase, Synapse also forgets the user's display name, avatar and messages for \
        users who join later (GDPR erasure). An account already deactivated is recorded as \
        `unchanged`. This cannot be undone: synbatch asks first on a terminal, and needs \
        --yes anywhere else.\n\n\
        Runs at most 2 deactivations at a time by default: each one makes Synapse leave every \
        room of the account, and parallel deactivations starve its database pool and can leave \
        rooms inconsistent. -j raises it, with a warning.",
    after_help = "Examples:\n  \
        synbatch deactivate leavers.csv\n  \
        synbatch deactivate gdpr-requests.csv --erase --yes"
)]
pub struct Args {
    /// Also erase the users (GDPR): rows with an `erase` column say so for themselves
    #[arg(long)]
    pub erase: bool,

    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    crate::rows::run(Deactivate::new(args.erase), &args.rows).await
}

const FIELDS: &[FieldDef] = &[USER, ERASE];

pub struct Deactivate {
    /// `--erase`: the default for rows without an `erase` cell.
    erase: bool,
    users: Users,
}

pub struct DeactivateTask {
    user: UserRef,
    erase: bool,
}

impl Deactivate {
    pub fn new(erase: bool) -> Deactivate {
        Deactivate {
            erase,
            users: Users::default(),
        }
    }

    fn task(&self, ctx: &Context, cells: &[crate::input::Cell]) -> Result<DeactivateTask, String> {
        let user = local_user(required(cells, 0, "user")?, ctx, ADMIN_API_LOCAL)?;
        // The run would lock itself out half-way: every later row would get 401.
        if user.as_str() == ctx.me {
            return Err(format!(
                "user `{}` is the token's own account: deactivate it last, by hand",
                ctx.me
            ));
        }
        let erase = match optional(cells, 1, "erase")? {
            Some(text) => boolean("erase", text)?,
            None => self.erase,
        };
        Ok(DeactivateTask { user, erase })
    }
}

impl Job for Deactivate {
    type Task = DeactivateTask;

    fn name(&self) -> &'static str {
        "deactivate"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["user"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["user", "erase"]
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<DeactivateTask>>) {
        let (task, user_text) = match &row.cells {
            Err(why) => (Err(why.clone()), String::new()),
            Ok(cells) => (self.task(ctx, cells), text(cells, 0).to_string()),
        };
        let user = task
            .as_ref()
            .map_or(user_text, |t| t.user.as_str().to_string());
        let erase = task
            .as_ref()
            .map_or("", |t| if t.erase { "true" } else { "false" });
        // Erasure is part of what the row wants: a rerun with --erase is new work.
        let key = match (user.is_empty(), erase) {
            (true, _) => Key::unreadable("deactivate", row.number),
            (false, "true") => Key::new("deactivate", [user.as_str(), "erase"]),
            (false, _) => Key::new("deactivate", [user.as_str()]),
        };
        out.push(Planned {
            row: row.number,
            key,
            fields: vec![user, erase.to_string()],
            task,
        });
    }

    fn serial_key(&self, task: &DeactivateTask) -> Option<String> {
        Some(task.user.as_str().to_string())
    }

    fn destructive(&self) -> bool {
        true
    }

    /// Synapse's own issues: parallel deactivations starve its database pool and leave rooms
    /// inconsistent (each one leaves every room of the account), and repeated ones pile up.
    fn concurrency(&self) -> u16 {
        2
    }

    fn concurrency_warning(&self) -> Option<&'static str> {
        Some(
            "each deactivation makes Synapse leave every room of the account; parallel ones \
             starve its database pool and can leave rooms inconsistent",
        )
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &DeactivateTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let user_id = self.users.resolve(hs, &task.user).await?;
        let account = match hs.user(&user_id).await {
            Ok(account) => account,
            Err(e @ HsError::Status { status: 404, .. }) => {
                return Err(Fail::Final(
                    Outcome::failed(&e)
                        .because(Cause::UserNotFound)
                        .saying(format!("no such user {user_id}")),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if account.deactivated && (account.erased || !task.erase) {
            let (now, what) = if account.erased {
                ("deactivated and erased", "already deactivated and erased")
            } else {
                ("deactivated", "already deactivated")
            };
            return Ok(match intent.in_doubt() {
                true => intent.done_earlier(None, now),
                false => Outcome::unchanged(None, what),
            });
        }
        let before = if account.deactivated {
            "was deactivated, not erased"
        } else {
            "was active"
        };
        intent.sending(before).await?;
        hs.deactivate(&user_id, task.erase).await?;
        Ok(Outcome::ok(200))
    }

    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &DeactivateTask,
    ) -> Result<Check, HsError> {
        let why = self.users.why_missing(hs, &task.user).await?;
        Ok(why.map_or(Check::Runs(None), Check::Fails))
    }

    fn describe(&self, task: &DeactivateTask) -> String {
        format!(
            "POST /_synapse/admin/v1/deactivate/{} {{\"erase\": {}}}",
            task.user.as_str(),
            task.erase
        )
    }
}
