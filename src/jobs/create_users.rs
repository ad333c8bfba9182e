//! `create-users`: accounts from a spreadsheet, with the admin API.
//!
//! `PUT /_synapse/admin/v2/users/<user_id>` both creates (201) and modifies (200), so whether the
//! account exists is known first: from the account list on a server of up to 10,000 accounts
//! (see `accounts`), else from `GET /_synapse/admin/v2/users/<user_id>`. Without that an update
//! would create accounts, and a create would overwrite them. A 200 where a 201 was expected is
//! an account made by someone else in between: the row is `failed` and says what was written
//! over it (the create body asks Synapse to keep its devices logged in).
//!
//! The body carries only what the row gives: `displayname`, `password` (at most 512
//! characters), `threepids` `[{medium: "email", address}]`, `admin`, `user_type`,
//! `external_ids` `[{auth_provider, external_id}]`. `threepids` and `external_ids` replace the
//! whole list, so an update sends the account's own list with the new entry.
//!
//! If the SSO mapping is already another account's, Synapse answers 409 "External id is already
//! in use." and, on create, makes the account anyway without the mapping: that row is `failed`
//! with a message that says so and names the owner.
//!
//! `--join ROOM` joins each account as part of its row (the admin join API, as `join` does); the
//! row is `ok` only when all of it is done, and a rerun finishes what is missing.
//!
//! Refused before any row on a Synapse that delegates authentication to MAS (see
//! `refused_under_mas`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value, json};

use clap::Args as ClapArgs;

use super::join::join_user;
use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{ExternalId, Homeserver, HsError, Threepid, User};
use crate::input::ids::UserRef;
use crate::input::{
    ADMIN, Cell, DISPLAYNAME, EMAIL, EXTERNAL_ID, FieldDef, PASSWORD, PROVIDER, Row, USER,
    USER_TYPE,
};
use crate::job::accounts::{Accounts, Known};
use crate::job::passwords::{self, PasswordFile};
use crate::job::rooms::Rooms;
use crate::job::user_room::checked_rooms;
use crate::job::{
    ADMIN_API_LOCAL, Check, Context, Intent, Job, Outcome, Planned, boolean, local_user, optional,
    required, text,
};
use crate::results::{Cause, Key};

/// Create accounts (admin API; columns: user, [displayname, password, email, admin, ...])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Create accounts through the admin API (PUT \
        /_synapse/admin/v2/users/<user_id>, once the account list or a GET has said the \
        account is absent).\n\n\
        Columns: user (a user id or localpart), and optionally displayname, password, email \
        (becomes an email threepid), admin (true/false/yes/no/1/0), user_type, provider and \
        external_id (an SSO mapping: give both). An account that exists already is left \
        alone (`unchanged`) by default; --on-existing update changes only the columns given; \
        --on-existing fail records it as failed. --join ROOM joins each account to ROOM as \
        part of its row: the row is `ok` only when all of it is done, and a rerun finishes \
        what is missing. Passwords are never written to the results file.",
    after_help = "Examples:\n  \
        synbatch create-users hires.csv --generate-passwords passwords.csv --join '#general:example.org'\n  \
        synbatch create-users hires.csv --on-existing update"
)]
pub struct Args {
    /// What to do with an account that exists already
    #[arg(long, value_enum, default_value = "skip")]
    pub on_existing: OnExisting,

    /// Give every new account without a password a strong random one, written as user,password
    /// to FILE (created with mode 0600; never to the results or the terminal)
    #[arg(long, value_name = "FILE")]
    pub generate_passwords: Option<PathBuf>,

    /// Join every account to this room too, as part of its row (repeatable)
    #[arg(long = "join", value_name = "ROOM")]
    pub join: Vec<String>,

    #[command(flatten)]
    pub rows: RowArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnExisting {
    /// Leave the account as it is (`unchanged`)
    Skip,
    /// Change the columns given (`ok`, or `unchanged` when they already match)
    Update,
    /// Record the row as failed
    Fail,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    let job = CreateUsers::new(args.on_existing, args.generate_passwords, &args.join)
        .map_err(Exit::Usage)?;
    crate::rows::run(job, &args.rows).await
}

const NAME: &str = "create-users";

/// What a pending line of this job records: the account was about to be created, or updated.
const CREATE: &str = "create";
const UPDATE: &str = "update";

const FIELDS: &[FieldDef] = &[
    USER,
    DISPLAYNAME,
    PASSWORD,
    EMAIL,
    ADMIN,
    USER_TYPE,
    PROVIDER,
    EXTERNAL_ID,
];

/// The results file gets every field but the password.
const RESULT_FIELDS: &[&str] = &[
    "user",
    "displayname",
    "email",
    "admin",
    "user_type",
    "provider",
    "external_id",
];

pub struct CreateUsers {
    on_existing: OnExisting,
    /// `--generate-passwords FILE`.
    password_path: Option<PathBuf>,
    /// That file, opened by `prepare` (only for a real run).
    passwords: Option<PasswordFile>,
    join: Vec<String>,
    rooms: Rooms,
    accounts: Accounts,
}

/// What a row asks for.
pub struct NewUser {
    user_id: String,
    displayname: Option<String>,
    password: Option<String>,
    /// Made by `--generate-passwords` for a row without a password.
    generated: Option<String>,
    email: Option<String>,
    admin: Option<bool>,
    user_type: Option<String>,
    external_id: Option<ExternalId>,
    /// The generated password is in the file (written once, before the first PUT).
    recorded: AtomicBool,
}

impl CreateUsers {
    pub fn new(
        on_existing: OnExisting,
        password_path: Option<PathBuf>,
        join: &[String],
    ) -> Result<CreateUsers, String> {
        Ok(CreateUsers {
            on_existing,
            password_path,
            passwords: None,
            join: checked_rooms("--join", join)?,
            rooms: Rooms::default(),
            accounts: Accounts::default(),
        })
    }

    fn read(&self, ctx: &Context, cells: &[Cell]) -> Result<NewUser, String> {
        let user_id = match local_user(required(cells, 0, "user")?, ctx, ADMIN_API_LOCAL)? {
            UserRef::Mxid(id) => id,
            UserRef::Email(address) => {
                return Err(format!(
                    "user `{}` is an email address: name the new account by user id or \
                     localpart (or use --localpart-from email), and put the address in the \
                     email column",
                    crate::input::quote(&address)
                ));
            }
        };
        let text = |at: usize, field: &str| -> Result<Option<String>, String> {
            Ok(optional(cells, at, field)?.map(String::from))
        };
        let password = text(2, "password")?;
        if password.as_ref().is_some_and(|p| p.len() > 512) {
            return Err("password is longer than 512 characters".into());
        }
        let email = text(3, "email")?.map(|e| e.to_lowercase());
        if let Some(email) = &email
            && crate::input::ids::user(email, "")
                .ok()
                .filter(|u| matches!(u, UserRef::Email(_)))
                .is_none()
        {
            return Err(format!(
                "email `{}` is not an email address",
                crate::input::quote(email)
            ));
        }
        let admin = text(4, "admin")?
            .map(|a| boolean("admin", &a))
            .transpose()?;
        let external_id = match (text(6, "provider")?, text(7, "external_id")?) {
            (Some(auth_provider), Some(external_id)) => Some(ExternalId {
                auth_provider,
                external_id,
            }),
            (None, None) => None,
            (Some(p), None) => {
                return Err(format!(
                    "provider `{}` is given without an external_id",
                    crate::input::quote(&p)
                ));
            }
            (None, Some(id)) => {
                return Err(format!("external_id `{id}` is given without a provider"));
            }
        };
        // The password the file holds for this account, if an earlier run wrote it (and then
        // its PUT failed): `record` writes no second line for it.
        let generated = (self.password_path.is_some() && password.is_none()).then(|| {
            let file = self.passwords.as_ref();
            let known = file.and_then(|f| f.password_for(&user_id));
            known.unwrap_or_else(passwords::generate)
        });
        Ok(NewUser {
            user_id,
            displayname: text(1, "displayname")?,
            password,
            generated,
            email,
            admin,
            user_type: text(5, "user_type")?,
            external_id,
            recorded: AtomicBool::new(false),
        })
    }

    /// The PUT body that creates the account.
    fn create_body(task: &NewUser) -> Value {
        let mut body = Map::new();
        // Ignored by a create; should the account have been made meanwhile by someone else,
        // its devices stay logged in.
        body.insert("logout_devices".into(), json!(false));
        if let Some(password) = task.password.as_ref().or(task.generated.as_ref()) {
            body.insert("password".into(), json!(password));
        }
        if let Some(name) = &task.displayname {
            body.insert("displayname".into(), json!(name));
        }
        if let Some(email) = &task.email {
            body.insert(
                "threepids".into(),
                json!([{"medium": "email", "address": email}]),
            );
        }
        if let Some(admin) = task.admin {
            body.insert("admin".into(), json!(admin));
        }
        if let Some(user_type) = &task.user_type {
            body.insert("user_type".into(), json!(user_type));
        }
        if let Some(id) = &task.external_id {
            body.insert("external_ids".into(), json!([id]));
        }
        Value::Object(body)
    }

    /// The PUT body that brings an existing account to what the row gives; empty when it
    /// already is so. Lists keep the account's own entries.
    fn update_body(task: &NewUser, account: &User) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(password) = &task.password {
            body.insert("password".into(), json!(password));
            // Synapse would otherwise log the account out of every device.
            body.insert("logout_devices".into(), json!(false));
        }
        if task.displayname.is_some() && task.displayname != account.displayname {
            body.insert("displayname".into(), json!(task.displayname));
        }
        if let Some(admin) = task.admin.filter(|a| *a != account.admin) {
            body.insert("admin".into(), json!(admin));
        }
        if task.user_type.is_some() && task.user_type != account.user_type {
            body.insert("user_type".into(), json!(task.user_type));
        }
        if let Some(email) = &task.email {
            let has = account
                .threepids
                .iter()
                .any(|t| t.medium == "email" && t.address.eq_ignore_ascii_case(email));
            if !has {
                let mut threepids: Vec<Threepid> = account.threepids.clone();
                threepids.push(Threepid {
                    medium: "email".into(),
                    address: email.clone(),
                });
                body.insert("threepids".into(), json!(threepids));
            }
        }
        if let Some(wanted) = &task.external_id
            && !account.external_ids.contains(wanted)
        {
            // This provider's mapping becomes the row's; other providers' stay.
            let mut ids: Vec<&ExternalId> = account
                .external_ids
                .iter()
                .filter(|e| e.auth_provider != wanted.auth_provider)
                .collect();
            ids.push(wanted);
            body.insert("external_ids".into(), json!(ids));
        }
        body
    }

    /// Whether a row for an existing account needs the account's details (not only that it
    /// exists): to update it, or to see its SSO mappings.
    fn needs_account(&self, task: &NewUser) -> bool {
        self.on_existing == OnExisting::Update
            || (self.on_existing == OnExisting::Skip && task.external_id.is_some())
    }

    /// The PUT that was to create the account modified one that someone else had just made.
    fn made_meanwhile(task: &NewUser) -> Outcome {
        let mut written = vec![];
        if task.password.is_some() || task.generated.is_some() {
            written.push("its password (its devices stay logged in)");
        }
        if task.displayname.is_some() {
            written.push("its display name");
        }
        if task.email.is_some() {
            written.push("its email addresses (now only this row's)");
        }
        if task.admin.is_some() {
            written.push("its admin flag");
        }
        if task.user_type.is_some() {
            written.push("its user type");
        }
        if task.external_id.is_some() {
            written.push("its SSO mappings (now only this row's)");
        }
        let what = if written.is_empty() {
            "nothing was changed".to_string()
        } else {
            format!("this row set {}", written.join(", "))
        };
        let mut outcome = Outcome::failed_because(format!(
            "{} was made by someone else (an SSO login? another admin?) after synbatch found it \
             free, and the PUT meant to create it modified it: {what}; check the account",
            task.user_id
        ))
        .because(Cause::ChangedMeanwhile);
        outcome.http_status = Some(200);
        outcome
    }

    /// A 409: say who owns the mapping, and that a new account exists without it.
    async fn conflict(&self, hs: &Homeserver, task: &NewUser, e: &HsError, new: bool) -> Outcome {
        let outcome = Outcome::failed(e).because(Cause::ExternalIdInUse);
        let Some(id) = &task.external_id else {
            return outcome;
        };
        let owner = match hs
            .user_by_external_id(&id.auth_provider, &id.external_id)
            .await
        {
            Ok(owner) => owner,
            Err(_) => "another account".into(),
        };
        outcome.saying(if new {
            format!(
                "{} was created WITHOUT its SSO mapping: {} id {} already belongs to {owner}",
                task.user_id, id.auth_provider, id.external_id
            )
        } else {
            format!(
                "{} id {} already belongs to {owner}; {} was not changed",
                id.auth_provider, id.external_id, task.user_id
            )
        })
    }

    /// Writes the generated password before the PUT that sets it: a crash between the two then
    /// leaves at worst a line for an account that was not made, never an account whose
    /// password nobody knows. Retries reuse the password and do not write it again.
    fn record_password(&self, task: &NewUser) -> Result<(), Outcome> {
        match (&self.passwords, &task.generated) {
            (Some(file), Some(password)) if !task.recorded.swap(true, Ordering::SeqCst) => {
                file.record(&task.user_id, password).map_err(|why| {
                    task.recorded.store(false, Ordering::SeqCst);
                    Outcome::failed_because(format!("{why}; the account was not created"))
                        .because(Cause::LocalFile)
                })
            }
            _ => Ok(()),
        }
    }
}

impl Job for CreateUsers {
    type Task = NewUser;

    fn name(&self) -> &'static str {
        NAME
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["user"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        RESULT_FIELDS
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<NewUser>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                out.push(Planned {
                    row: row.number,
                    key: Key::unreadable(NAME, row.number),
                    fields: vec![String::new(); RESULT_FIELDS.len()],
                    task: Err(why.clone()),
                });
                return;
            }
        };
        let task = self.read(ctx, cells);
        // Results show what the row said (less the password), valid or not.
        let cell = |at: usize| text(cells, at).to_string();
        let user = task
            .as_ref()
            .map_or_else(|_| cell(0), |t| t.user_id.clone());
        let fields = vec![
            user.clone(),
            cell(1),
            cell(3),
            cell(4),
            cell(5),
            cell(6),
            cell(7),
        ];
        // What the row wants, less the password: a rerun with other values or other --join
        // rooms is new work for --resume.
        let key = if user.is_empty() {
            Key::unreadable(NAME, row.number)
        } else {
            let given = RESULT_FIELDS.iter().zip(&fields).skip(1);
            let parts = given
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| format!("{name}={value}"))
                .chain(self.join.iter().map(|room| format!("join={room}")));
            parts.fold(Key::new(NAME, [user.as_str()]), |key, part| key.and(&part))
        };
        out.push(Planned {
            row: row.number,
            key,
            fields,
            task,
        });
    }

    /// Synapse makes accounts faster with more creates in flight (its CPU per account drops),
    /// and each row is one request once the account list is read. On a production server,
    /// where password hashing dominates, Synapse's thread pool bounds the parallel hashing
    /// whatever the client sends.
    fn concurrency(&self) -> u16 {
        16
    }

    /// The password file is opened before any account is made, so no password can be lost.
    fn prepare(&mut self) -> Result<(), String> {
        if let Some(path) = &self.password_path {
            self.passwords = Some(PasswordFile::open(path)?);
        }
        Ok(())
    }

    fn serial_key(&self, task: &NewUser) -> Option<String> {
        Some(task.user_id.clone())
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &NewUser,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        // After a PUT whose answer was lost, or a run stopped after one, only the server can say
        // what happened: the list may predate it.
        let doubt = intent.in_doubt();
        let known = if doubt {
            Known::Unknown
        } else {
            self.accounts.lookup(hs, &task.user_id).await
        };
        // `Some(None)`: it exists, and nothing more about it is needed.
        let existing = match known {
            Known::Absent => None,
            Known::Exists if !self.needs_account(task) => Some(None),
            _ => match hs.user(&task.user_id).await {
                Ok(account) => Some(Some(account)),
                Err(HsError::Status { status: 404, .. }) => None,
                Err(e) => return Err(e.into()),
            },
        };
        // What this row did to the account: created it, changed it, or nothing.
        let mut done = None;
        match existing {
            // An earlier attempt's create went through; its answer was lost.
            Some(_) if doubt && intent.before().as_deref() == Some(CREATE) => done = Some(201),
            Some(account) => match self.on_existing {
                // Left alone, but a missing SSO mapping is not "unchanged": it is what a 409
                // on create leaves behind, and the account cannot log in through SSO.
                OnExisting::Skip => {
                    if let (Some(id), Some(account)) = (&task.external_id, &account)
                        && !account.external_ids.contains(id)
                    {
                        return Ok(Outcome::failed_because(format!(
                            "{} exists without its SSO mapping {} id {}: map it with \
                             set-external-id, or rerun with --on-existing update",
                            task.user_id, id.auth_provider, id.external_id
                        ))
                        .because(Cause::ExternalIdMissing));
                    }
                }
                OnExisting::Fail => {
                    let why = format!("{} exists already (--on-existing fail)", task.user_id);
                    return Ok(Outcome::failed_because(why).because(Cause::UserExists));
                }
                OnExisting::Update => {
                    let Some(account) = account else {
                        unreachable!("an update reads the account (needs_account)");
                    };
                    let body = Self::update_body(task, &account);
                    if body.is_empty() && doubt {
                        // An earlier attempt's update went through.
                        done = Some(200);
                    } else if !body.is_empty() {
                        intent.sending(UPDATE).await?;
                        match hs.put_user(&task.user_id, &Value::Object(body)).await {
                            Ok(status) => done = Some(status),
                            Err(e @ HsError::Status { status: 409, .. }) => {
                                return Ok(self.conflict(hs, task, &e, false).await);
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            },
            None => {
                if let Err(outcome) = self.record_password(task) {
                    return Ok(outcome);
                }
                intent.sending(CREATE).await?;
                match hs.put_user(&task.user_id, &Self::create_body(task)).await {
                    Ok(201) => {
                        self.accounts.add(&task.user_id).await;
                        done = Some(201);
                    }
                    // Modified, not created: someone made the account after it was checked,
                    // unless it was this row's own earlier PUT, delivered late.
                    Ok(_) if !doubt => {
                        self.accounts.add(&task.user_id).await;
                        return Ok(Self::made_meanwhile(task));
                    }
                    Ok(_) => done = Some(201),
                    // This row's earlier PUT, delivered late, made it while this one was checked.
                    Err(HsError::Status {
                        status: 400,
                        errcode,
                        ..
                    }) if doubt && errcode == "M_USER_IN_USE" => done = Some(201),
                    // Synapse made the account all the same, without the mapping.
                    Err(e @ HsError::Status { status: 409, .. }) if task.external_id.is_some() => {
                        self.accounts.add(&task.user_id).await;
                        return Ok(self.conflict(hs, task, &e, true).await);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let mut joined = false;
        for room in &self.join {
            match join_user(hs, &self.rooms, &task.user_id, room, intent).await {
                Ok(now) => joined |= now,
                Err(Fail::Final(outcome)) => {
                    let account = if done == Some(201) {
                        "created"
                    } else {
                        "exists"
                    };
                    let message = format!(
                        "account {account}, but joining {room} failed: {}",
                        outcome.message
                    );
                    return Ok(outcome.saying(message));
                }
                Err(other) => return Err(other),
            }
        }
        Ok(match (done, joined) {
            (Some(status), _) => Outcome::ok(status),
            (None, true) => Outcome::ok(200),
            (None, false) if self.join.is_empty() => Outcome::unchanged(None, "account exists"),
            (None, false) => Outcome::unchanged(None, "account exists and is in every --join room"),
        })
    }

    /// An account that `--on-existing fail` would refuse, an SSO mapping that is another
    /// account's, a `--join` room the admin cannot bring users into.
    async fn check(
        &self,
        hs: &Homeserver,
        ctx: &Context,
        task: &NewUser,
    ) -> Result<Check, HsError> {
        let exists = match hs.user(&task.user_id).await {
            Ok(_) => true,
            Err(HsError::Status { status: 404, .. }) => false,
            Err(e) => return Err(e),
        };
        if exists && self.on_existing == OnExisting::Fail {
            return Ok(Check::Fails(format!(
                "{} exists already (--on-existing fail)",
                task.user_id
            )));
        }
        if let Some(id) = &task.external_id {
            match hs
                .user_by_external_id(&id.auth_provider, &id.external_id)
                .await
            {
                Ok(owner) if owner != task.user_id => {
                    return Ok(Check::Fails(format!(
                        "{} id {} already belongs to {owner}",
                        id.auth_provider, id.external_id
                    )));
                }
                Ok(_) | Err(HsError::Status { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        for room in &self.join {
            if let Some(why) = self
                .rooms
                .why_cannot_invite(hs, &ctx.me, room, true)
                .await?
            {
                return Ok(Check::Fails(why));
            }
        }
        Ok(Check::Runs(None))
    }

    fn describe(&self, task: &NewUser) -> String {
        let mut body = Self::create_body(task);
        if body.get("password").is_some() {
            body["password"] = json!("<hidden>");
        }
        let mut text = format!(
            "PUT /_synapse/admin/v2/users/{} {body} (if the account is absent)",
            task.user_id
        );
        if !self.join.is_empty() {
            text.push_str(&format!(" (if absent); then join {}", self.join.join(", ")));
        }
        text
    }

    /// Under MAS, Synapse answers 403 to a new account ("Create the user via MAS instead") and
    /// to a password ("Password change disabled"), and its admin flag no longer makes an admin
    /// (the token's scope does). What is left, renaming existing accounts, is not this job.
    fn refused_under_mas(&self) -> Option<&'static str> {
        Some(
            "because Synapse refuses to create accounts and to set passwords there, and its \
             admin flag no longer makes an admin",
        )
    }
}
