//! `notify`: send each user a server notice, written from a template over the row's columns.
//!
//! `PUT /_synapse/admin/v1/send_server_notice/<txn_id>` `{"user_id", "content"}`. Synapse
//! delivers it in the user's server-notices room: a room created by the notices user, to which
//! the user is invited.
//!
//! Never twice: the transaction id comes from the row's key, which covers retries only (Synapse
//! keeps transaction ids in memory for about 30 minutes per token, and forgets them on
//! restart). So the notice's content also carries a mark, `org.synbatch.key`, a hash of the
//! row's key (the user and the text), and before sending, the job looks for it in the user's
//! notices room: among the rooms the user is invited to or joined (`GET /_synapse/admin/v1/users/
//! <user_id>/memberships`), those that someone else created and where at most two are joined
//! (`GET /_synapse/admin/v1/rooms/<room_id>`: the notices user, and the user once they accept),
//! whose creator's messages are read newest first through the admin messages API, at most
//! `SCAN_PAGES` pages. A notice found there is `unchanged`; a room too long to read to its start
//! makes the row `failed` rather than risk a second notice.
//!
//! Under MAS the notice goes by `POST /_synapse/admin/v1/send_server_notice` (no transaction
//! id): Synapse 1.163 answers the PUT with 500 for a MAS token that has no device, as it keys
//! transactions on the token. The look into the notices room before every attempt keeps it
//! from going twice there too.
//!
//! Without `server_notices` in Synapse's config, the run stops before the first row (exit 2):
//! a probe for a user of another server gets "not enabled" from such a server and sends nothing
//! from any.

use std::collections::BTreeSet;

use clap::Args as ClapArgs;
use serde_json::json;

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError, Notices};
use crate::input::ids::UserRef;
use crate::input::{Binder, Cell, FieldDef, Input, Row, USER};
use crate::job::{Cache, Context, Intent, Job, Outcome, Planned, Step, Users, local_user_cell};
use crate::results::Key;

/// Send server notices (admin API; columns: user, [message], and the template's columns)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Send each user a server notice \
        (PUT /_synapse/admin/v1/send_server_notice/<txn_id>), from --message or the row's \
        message column.\n\n\
        The text is a template over the row's columns: {displayname} is the row's displayname \
        cell, {user} its user id; {{ and }} are literal braces. A row missing a column the \
        template names, or with that cell empty, is invalid; nothing is sent with a blank.\n\n\
        A notice is never sent twice, whether a retry, --resume or a rerun: each carries a mark \
        of its row (org.synbatch.key) and the user's notices room is read for it before \
        sending; a notice already there is `unchanged`. Synapse must have server notices \
        configured (`server_notices` in homeserver.yaml); without them the run stops before \
        the first row.",
    after_help = "Examples:\n  \
        synbatch notify staff.csv --message 'Welcome {displayname}, your rooms are ready'\n  \
        synbatch notify project-members.csv --message 'The project rooms close on Friday'"
)]
pub struct Args {
    /// The notice's text, a template over the row's columns ({displayname}); a row's message
    /// cell takes its place
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,

    #[command(flatten)]
    pub rows: RowArgs,
}

/// Pages of 100 messages read in a notices room before giving up on finding a mark.
const SCAN_PAGES: usize = 20;
const PAGE: u32 = 100;
/// The content field that carries a notice's mark.
const MARK_FIELD: &str = "org.synbatch.key";

const MESSAGE: FieldDef = FieldDef {
    name: "message",
    aliases: &["notice", "text"],
    fallback: &[],
};

pub async fn run(args: Args) -> Result<(), Exit> {
    let template = match &args.message {
        Some(text) => {
            Some(Template::parse(text).map_err(|why| Exit::usage(format!("--message: {why}")))?)
        }
        None => None,
    };
    // The columns templates name: --message's, and those of a message column (read once more
    // from the start: the input layer binds only the fields a job declares, so the job declares
    // every column a template may name).
    let mut columns: BTreeSet<String> = template.iter().flat_map(Template::columns).collect();
    columns.extend(message_cell_columns(&args.rows)?);
    columns.remove("user");
    if columns.remove("message") {
        return Err(Exit::usage(
            "a template cannot name {message}, the template itself",
        ));
    }
    let mut fields = vec![USER, MESSAGE];
    for column in columns {
        let name: &'static str = Box::leak(column.into_boxed_str());
        fields.push(FieldDef {
            name,
            aliases: &[],
            fallback: &[],
        });
    }
    if !args.rows.run.dry_run && !args.rows.run.check {
        notices_are_on(&args.rows).await?;
    }
    let job = Notify {
        template,
        fields: Box::leak(fields.into_boxed_slice()),
        users: Users::default(),
        rooms: Cache::default(),
    };
    crate::rows::run(job, &args.rows).await
}

/// The placeholders of every `message` cell of the input, when it is a file with that column.
fn message_cell_columns(args: &RowArgs) -> Result<BTreeSet<String>, Exit> {
    let plan = crate::rows::plan::RunPlan::new(args, "notify", 1, false);
    let mut found = BTreeSet::new();
    if plan.input.path.is_none() {
        return Ok(found);
    }
    const FIRST_TWO: &[FieldDef] = &[USER, MESSAGE];
    let binder = Binder::new(FIRST_TWO, &columns_for(FIRST_TWO, &args.columns))?;
    // A missing or unreadable input is said by the run itself, with the rest of its checks.
    let Ok(input) = Input::open(&plan.input, binder, &[]) else {
        return Ok(found);
    };
    let _ = input.for_each_row(|row| {
        if let Ok(cells) = &row.cells
            && let Cell::Text(text) = &cells[1]
            && let Ok(template) = Template::parse(text)
        {
            found.extend(template.columns());
        }
        true
    });
    Ok(found)
}

/// The `--column` options that name `fields` (the others are for template columns).
fn columns_for(fields: &[FieldDef], columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|spec| {
            let field = spec.split_once('=').map_or(spec.as_str(), |(f, _)| f);
            fields
                .iter()
                .any(|f| f.name.eq_ignore_ascii_case(field.trim()))
        })
        .cloned()
        .collect()
}

/// Stops the run before its first row when Synapse sends no server notices.
async fn notices_are_on(args: &RowArgs) -> Result<(), Exit> {
    crate::connect::check(&args.server)?;
    let conn = crate::connect::connect(&args.server, 1, true).await?;
    match conn.hs.notices_enabled().await {
        Ok(Notices::Enabled) => Ok(()),
        Ok(Notices::Disabled(said)) => Err(Exit::usage(format!(
            "the homeserver does not send server notices ({said}): set `server_notices` \
             (system_mxid_localpart, ...) in homeserver.yaml and restart Synapse; nothing was \
             sent"
        ))),
        Err(e) => Err(Exit::aborted(format!(
            "cannot ask the homeserver whether it sends server notices: {e}"
        ))),
    }
}

/// A notice text with `{column}` placeholders.
#[derive(Debug, Clone, PartialEq)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Column(String),
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut parts = vec![];
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_alphanumeric() || matches!(c, '_' | '-' | ' ') => {
                                name.push(c)
                            }
                            _ => {
                                return Err(format!(
                                    "`{{{name}` is not a placeholder: write {{column}}, or {{{{ \
                                     for a brace"
                                ));
                            }
                        }
                    }
                    let name = name.trim();
                    if name.is_empty() {
                        return Err("`{}` names no column".into());
                    }
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                    parts.push(Part::Column(name.to_lowercase()));
                }
                '}' => return Err("a lone `}`: write }} for a brace".into()),
                c => literal.push(c),
            }
        }
        parts.push(Part::Text(literal));
        parts.retain(|p| !matches!(p, Part::Text(t) if t.is_empty()));
        Ok(Template { parts })
    }

    fn columns(&self) -> impl Iterator<Item = String> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Column(name) => Some(name.clone()),
            Part::Text(_) => None,
        })
    }

    /// The text, each placeholder replaced by `value(column)`; a column without a value makes
    /// the row invalid, named.
    fn render<'v>(&self, value: impl Fn(&str) -> Option<&'v str>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Column(name) => match value(name) {
                    Some(v) if !v.trim().is_empty() => out.push_str(v),
                    _ => {
                        return Err(format!(
                            "the message names {{{name}}}, but the row has no {name} (no such \
                             column, or its cell is empty)"
                        ));
                    }
                },
            }
        }
        if out.trim().is_empty() {
            return Err("the message is empty".into());
        }
        Ok(out)
    }
}

/// A stable 128-bit digest as 32 hex digits (two FNV-1a passes with different bases): the
/// same key gives the same mark in every run and every synbatch version, which a hash from the
/// standard library does not promise.
fn mark(key: &str) -> String {
    let fnv = |basis: u64| {
        key.bytes().fold(basis, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

pub struct Notify {
    template: Option<Template>,
    fields: &'static [FieldDef],
    users: Users,
    /// Each room's creator and federation flag, read once per run.
    rooms: Cache<crate::homeserver::RoomSummary>,
}

pub struct NoticeTask {
    user: UserRef,
    text: String,
    /// The row key's mark: the transaction id's tail and the content's `org.synbatch.key`.
    mark: String,
    /// Send with the mark as transaction id. Not under MAS: Synapse 1.163 answers 500 there
    /// (a MAS token without a device has no access-token id to key the transaction on), so
    /// the notice goes without one, and the look into the notices room before every attempt
    /// is what keeps it from going twice.
    keyed: bool,
}

impl Notify {
    fn text(&self, cells: &[Cell], user: &str) -> Result<String, String> {
        let template = match &cells[1] {
            Cell::Text(text) => Template::parse(text).map_err(|why| format!("message: {why}"))?,
            Cell::Bad(why) => return Err(format!("message {why}")),
            Cell::Empty => match &self.template {
                Some(template) => template.clone(),
                None => {
                    return Err(
                        "no message: the message cell is empty and there is no --message".into(),
                    );
                }
            },
        };
        template.render(|column| {
            if column == "user" {
                return Some(user);
            }
            let at = self.fields.iter().position(|f| f.name == column)?;
            match cells.get(at)? {
                Cell::Text(text) => Some(text.as_str()),
                _ => None,
            }
        })
    }

    /// Whether the notice with `mark` is in one of `user_id`'s notices rooms.
    async fn already_sent(&self, hs: &Homeserver, user_id: &str, mark: &str) -> Step<bool> {
        let memberships = hs.memberships(user_id).await?;
        let mut rooms: Vec<(&String, &String)> = memberships
            .iter()
            .filter(|(_, m)| matches!(m.as_str(), "invite" | "join"))
            .collect();
        // Invited first: a notices room the user never opened is still an invitation.
        rooms.sort_by_key(|(_, m)| m.as_str() != "invite");
        for (room_id, _) in rooms {
            let summary = self
                .rooms
                .get_or_try(room_id, || hs.room_summary(room_id))
                .await;
            let summary = match summary {
                Ok(s) => s,
                Err(HsError::Status { status: 404, .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            // A notices room: created by the notices user, who alone is joined (the user too,
            // once they accept the invitation).
            let Some(creator) = summary.creator.as_deref() else {
                continue;
            };
            if creator == user_id || summary.joined_members > 2 {
                continue;
            }
            if self.room_has(hs, room_id, creator, mark).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `sender`'s messages in the room include the notice with `mark`.
    async fn room_has(
        &self,
        hs: &Homeserver,
        room_id: &str,
        sender: &str,
        mark: &str,
    ) -> Step<bool> {
        let mut from: Option<String> = None;
        for _ in 0..SCAN_PAGES {
            let page = hs
                .messages_back(room_id, sender, from.as_deref(), PAGE)
                .await?;
            if page.chunk.iter().any(|e| e["content"][MARK_FIELD] == mark) {
                return Ok(true);
            }
            match page.end {
                Some(end) if !page.chunk.is_empty() => from = Some(end),
                _ => return Ok(false),
            }
        }
        Err(Fail::Final(Outcome::failed_because(format!(
            "room {room_id} holds more than {} messages: synbatch cannot tell whether this \
             notice was sent already, so it sends nothing",
            SCAN_PAGES * PAGE as usize
        ))))
    }
}

impl Job for Notify {
    type Task = NoticeTask;

    fn name(&self) -> &'static str {
        "notify"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        self.fields
    }

    fn required_fields(&self) -> Vec<&'static str> {
        match self.template {
            Some(_) => vec!["user"],
            None => vec!["user", "message"],
        }
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["user", "notice"]
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<NoticeTask>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                out.push(Planned::invalid(
                    "notify",
                    row.number,
                    &["", ""],
                    why.clone(),
                ));
                return;
            }
        };
        let (user, shown) = local_user_cell(cells, ctx);
        let planned = user.and_then(|user| {
            let text = self.text(cells, &shown)?;
            Ok((user, text))
        });
        let (user, text) = match planned {
            Ok(planned) => planned,
            Err(why) => {
                out.push(Planned::invalid("notify", row.number, &[&shown, ""], why));
                return;
            }
        };
        // The text is part of what the row wants: another notice to the same user is new work.
        let key = Key::new("notify", [shown.as_str()]).and(&format!("text={}", &mark(&text)[..12]));
        out.push(Planned {
            row: row.number,
            fields: vec![shown, text.clone()],
            task: Ok(NoticeTask {
                user,
                text,
                mark: mark(key.as_str()),
                keyed: !ctx.delegated,
            }),
            key,
        });
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &NoticeTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let user_id = self.users.resolve(hs, &task.user).await?;
        if self.already_sent(hs, &user_id, &task.mark).await? {
            let now = "the notice is in the user's notices room";
            return Ok(match intent.in_doubt() {
                true => intent.done_earlier(None, now),
                false => Outcome::unchanged(None, format!("{now} already")),
            });
        }
        intent.sending("not in the user's notices room").await?;
        let content = json!({ "msgtype": "m.text", "body": task.text, MARK_FIELD: task.mark });
        match hs
            .send_notice(
                task.keyed
                    .then(|| format!("synbatch-{}", task.mark))
                    .as_deref(),
                &user_id,
                &content,
            )
            .await
        {
            Ok(()) => Ok(Outcome::ok(200)),
            Err(e @ HsError::Status { status: 404, .. }) => Err(Fail::Final(
                Outcome::failed(&e).saying(format!("no such user {user_id}")),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn describe(&self, task: &NoticeTask) -> String {
        let request = match task.keyed {
            true => format!(
                "PUT /_synapse/admin/v1/send_server_notice/synbatch-{}",
                task.mark
            ),
            false => "POST /_synapse/admin/v1/send_server_notice".to_string(),
        };
        format!(
            "{request} {{\"user_id\": {:?}, \"content\": {{\"body\": {:?}}}}}",
            task.user.as_str(),
            task.text
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_name_columns_and_keep_escaped_braces() {
        let t = Template::parse("Hi {displayname}, {{x}} in {Team}").unwrap();
        assert_eq!(t.columns().collect::<Vec<_>>(), ["displayname", "team"]);
        let text = t.render(|c| match c {
            "displayname" => Some("Ann"),
            "team" => Some("Ops"),
            _ => None,
        });
        assert_eq!(text.unwrap(), "Hi Ann, {x} in Ops");
        let missing = t.render(|c| (c == "team").then_some("Ops")).unwrap_err();
        assert!(missing.contains("{displayname}"), "{missing}");
        let empty = t.render(|_| Some(" ")).unwrap_err();
        assert!(empty.contains("displayname"), "{empty}");
        for bad in ["{", "a {b", "}", "{}", "{a.b}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn marks_are_stable_and_tell_keys_apart() {
        assert_eq!(mark("notify @a:x"), mark("notify @a:x"));
        assert_ne!(mark("notify @a:x"), mark("notify @b:x"));
        assert_eq!(mark("").len(), 32);
        // Fixed: a mark written by one version is found by the next (FNV-1a of "a" is
        // af63dc4c8601ec8c).
        assert!(mark("a").starts_with("af63dc4c8601ec8c"), "{}", mark("a"));
    }

    fn job() -> Notify {
        Notify {
            template: Some(Template::parse("Welcome {displayname}").unwrap()),
            fields: &[
                USER,
                MESSAGE,
                FieldDef {
                    name: "displayname",
                    aliases: &[],
                    fallback: &[],
                },
            ],
            users: Users::default(),
            rooms: Cache::default(),
        }
    }

    #[test]
    fn rows_without_the_named_column_are_invalid_and_say_so() {
        let job = job();
        let planned = crate::job::plan_row(&job, "x.org", &Row::of(1, &["ann", "", "Ann"]));
        let task = planned[0].task.as_ref().unwrap();
        assert_eq!(task.text, "Welcome Ann");
        assert!(
            planned[0]
                .key
                .as_str()
                .starts_with("notify @ann:x.org text=")
        );
        let planned = crate::job::plan_row(&job, "x.org", &Row::of(2, &["bob", "", ""]));
        let why = planned[0].task.as_ref().err().unwrap();
        assert!(why.contains("displayname"), "{why}");
        let planned = crate::job::plan_row(&job, "x.org", &Row::of(3, &["cy", "Hi {user}", ""]));
        assert_eq!(planned[0].task.as_ref().unwrap().text, "Hi @cy:x.org");
    }
}
