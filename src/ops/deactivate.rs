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

use super::{
    ADMIN_API_LOCAL, Context, Op, Outcome, Planned, Users, boolean, classify, local_user, optional,
    required,
};
use crate::executor::Attempt;
use crate::homeserver::{Homeserver, HsError};
use crate::input::ids::UserRef;
use crate::input::{Cell, ERASE, FieldDef, Row, USER};

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
}

impl Op for Deactivate {
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
        let planned = match &row.cells {
            Err(why) => Planned {
                row: row.number,
                key: super::unreadable_key("deactivate", row.number),
                fields: vec![String::new(), String::new()],
                task: Err(why.clone()),
            },
            Ok(cells) => {
                let user_text = match &cells[0] {
                    Cell::Text(t) => t.clone(),
                    _ => String::new(),
                };
                let task = required(cells, 0, "user")
                    .and_then(|cell| local_user(cell, ctx, ADMIN_API_LOCAL))
                    .and_then(|user| {
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
                    });
                let user = task
                    .as_ref()
                    .map_or(user_text, |t| t.user.as_str().to_string());
                let erase = task
                    .as_ref()
                    .map_or("", |t| if t.erase { "true" } else { "false" });
                Planned {
                    row: row.number,
                    // Erasure is part of what the row wants: a rerun with --erase is new work.
                    key: match (user.is_empty(), erase) {
                        (true, _) => super::unreadable_key("deactivate", row.number),
                        (false, "true") => format!("deactivate {user} erase"),
                        (false, _) => format!("deactivate {user}"),
                    },
                    fields: vec![user, erase.to_string()],
                    task,
                }
            }
        };
        out.push(planned);
    }

    fn serial_key(&self, task: &DeactivateTask) -> Option<String> {
        Some(task.user.as_str().to_string())
    }

    fn destructive(&self) -> bool {
        true
    }

    async fn attempt(&self, hs: &Homeserver, task: &DeactivateTask) -> Attempt<Outcome> {
        let user_id = match self.users.resolve(hs, &task.user).await {
            Ok(id) => id,
            Err(attempt) => return attempt,
        };
        let account = match hs.user(&user_id).await {
            Ok(account) => account,
            Err(e @ HsError::Status { status: 404, .. }) => {
                let mut outcome = Outcome::failed(&e);
                outcome.message = format!("no such user {user_id}");
                return Attempt::Done(outcome);
            }
            Err(e) => return classify(e),
        };
        if account.deactivated && (account.erased || !task.erase) {
            let what = if account.erased {
                "already deactivated and erased"
            } else {
                "already deactivated"
            };
            return Attempt::Done(Outcome::unchanged(None, what));
        }
        match hs.deactivate(&user_id, task.erase).await {
            Ok(()) => Attempt::Done(Outcome::ok(200)),
            Err(e) => classify(e),
        }
    }

    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &DeactivateTask,
    ) -> Result<Option<String>, HsError> {
        self.users.why_missing(hs, &task.user).await
    }

    fn describe(&self, task: &DeactivateTask) -> String {
        format!(
            "POST /_synapse/admin/v1/deactivate/{} {{\"erase\": {}}}",
            task.user.as_str(),
            task.erase
        )
    }
}
