//! `create-rooms`: rooms and spaces from a sheet, as the token's user.
//!
//! `POST /_matrix/client/v3/createRoom` `{room_alias_name, preset, name?, topic?,
//! creation_content?: {type: m.space}, initial_state: [m.room.encryption?, m.space.parent?]}`,
//! then, for a room in a space, `PUT .../rooms/<space>/state/m.space.child/<room_id>`, and for a
//! room listed in the directory, `PUT /_matrix/client/v3/directory/list/room/<room_id>`
//! `{"visibility": "public"}`, read back with a GET: createRoom's own `visibility: public` is
//! silently ignored by a Synapse whose `room_list_publication_rules` do not allow it, and the PUT
//! answers 403 there; either is a `failed` row that names the key.
//!
//! Answers that matter on a rerun: an alias that resolves (`GET /_matrix/client/v3/directory/
//! room/<alias>`) is an existing room: `unchanged` (its differences from the sheet said in the
//! message), or with `--on-existing update` its name, topic, directory listing and space link
//! are made to match (`ok`, naming what changed). Encryption is never turned off: Matrix cannot.
//! A row in doubt (a createRoom whose answer was lost, a run killed after it) finds its alias
//! and finishes the links and the listing.
//!
//! Spaces come first: a sheet read from a file is run twice, its space rows (`is_space`) then
//! the others, so that a room can name a space of the same sheet whatever the order. Each pass
//! streams the file; nothing is held beyond the rows in flight.

use std::sync::Mutex;

use clap::{Args as ClapArgs, ValueEnum};
use serde_json::{Value, json};

use crate::cli::RowArgs;
use crate::executor::{Attempt, Fail};
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError, StateEvent};
use crate::input::{Binder, Cell, FieldDef, Input, Row};
use crate::job::rooms::Rooms;
use crate::job::{Context, Intent, Job, Outcome, Planned, Step, boolean, optional, required, text};
use crate::results::Key;
use crate::rows::Source;

/// Create rooms and spaces (as the token's user; columns: alias, [name, topic, preset,
/// directory, encrypted, space, is_space])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Create rooms and spaces as the token's user \
        (POST /_matrix/client/v3/createRoom), link them to their space, and list them in the \
        room directory.\n\n\
        Columns: alias (the localpart, or #name:server), and optionally name, topic, preset \
        (public, private or trusted_private; blank means private, spaces too), directory \
        (yes: list the room in the room directory), encrypted (yes/no), space (the parent \
        space, by alias or room id: the link goes both ways, m.space.child in the space and \
        m.space.parent in the room) and is_space (yes: create a space).\n\n\
        Spaces in the sheet are created before the rooms that name them, whatever the order \
        of the rows (a file is read twice; from stdin, rows run in their order). An alias that \
        exists already is `unchanged`; with --on-existing update its name, topic, directory \
        listing and space link are changed to match the sheet. Encryption is never turned \
        off. Listing in the directory needs `room_list_publication_rules` to allow it in \
        Synapse's config; a refusal is a `failed` row that says so. The results record each \
        room's id (room_id).",
    after_help = "Examples:\n  \
        synbatch create-rooms new-department.csv\n  \
        synbatch create-rooms rooms.csv --on-existing update"
)]
pub struct Args {
    /// What to do with an alias that exists already
    #[arg(long, value_enum, default_value_t = OnExisting::Skip)]
    pub on_existing: OnExisting,

    #[command(flatten)]
    pub rows: RowArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnExisting {
    /// Leave it as it is (`unchanged`)
    Skip,
    /// Change its name, topic, directory listing and space link to match the sheet
    Update,
    /// Record the row as failed
    Fail,
}

/// Which rows a pass takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    All,
    Spaces,
    Rooms,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    let job = |pass| CreateRooms {
        pass,
        on_existing: args.on_existing,
        rooms: Rooms::default(),
    };
    if !has_space_rows(&args.rows) {
        return crate::rows::run(job(Pass::All), &args.rows).await;
    }
    eprintln!("create-rooms: the sheet names spaces: they are created first, then the rooms");
    let passes = vec![
        (job(Pass::Spaces), Source::Input),
        (job(Pass::Rooms), Source::Input),
    ];
    crate::rows::run_passes(passes, &args.rows).await
}

/// Whether the input is a file with a row that creates a space (then it is run in two passes).
fn has_space_rows(args: &RowArgs) -> bool {
    let plan = crate::rows::plan::RunPlan::new(args, "create-rooms", 1, false);
    if plan.input.path.is_none() {
        return false;
    }
    let Ok(binder) = Binder::new(FIELDS, &args.columns) else {
        return false;
    };
    // A missing or unreadable input is said by the run itself, with the rest of its checks.
    let Ok(input) = Input::open(&plan.input, binder, &[]) else {
        return false;
    };
    let mut found = false;
    let _ = input.for_each_row(|row| {
        found = row.cells.as_ref().is_ok_and(|cells| is_space(cells));
        !found
    });
    found
}

/// A row whose is_space cell says yes.
fn is_space(cells: &[Cell]) -> bool {
    matches!(&cells[7], Cell::Text(t) if boolean("is_space", t) == Ok(true))
}

const fn field(name: &'static str, aliases: &'static [&'static str]) -> FieldDef {
    FieldDef {
        name,
        aliases,
        fallback: &[],
    }
}

const FIELDS: &[FieldDef] = &[
    field("alias", &["roomalias", "room"]),
    field("name", &["roomname"]),
    field("topic", &[]),
    field("preset", &["visibility"]),
    field("directory", &["publish", "listed"]),
    field("encrypted", &["encryption", "e2ee"]),
    field("space", &["parent", "parentspace"]),
    field("is_space", &[]),
];

pub struct CreateRooms {
    pass: Pass,
    on_existing: OnExisting,
    /// Spaces named by alias, resolved once per run.
    rooms: Rooms,
}

pub struct RoomTask {
    /// `#localpart:server`.
    alias: String,
    localpart: String,
    name: Option<String>,
    topic: Option<String>,
    preset: &'static str,
    directory: Option<bool>,
    encrypted: Option<bool>,
    space: Option<String>,
    is_space: bool,
    /// This server, for the `via` of space links.
    server: String,
    /// The room's id, once known.
    room_id: Mutex<String>,
}

const ENCRYPTION: &str = "m.megolm.v1.aes-sha2";

/// The localpart of an alias cell: `name` or `#name:this-server`.
fn localpart(cell: &str, ctx: &Context) -> Result<String, String> {
    let cell = cell.trim();
    let local = match cell.strip_prefix('#') {
        Some(rest) => match rest.split_once(':') {
            Some((local, server)) if server == ctx.server_name => local,
            Some(_) => {
                return Err(format!(
                    "alias `{cell}` is not on this server ({}): synbatch creates rooms here only",
                    ctx.server_name
                ));
            }
            None => return Err(format!("alias `{cell}` has no server part")),
        },
        None => cell,
    };
    if local.is_empty() || local.contains([':', '#', ' ', '/']) {
        return Err(format!(
            "alias `{cell}` is not a localpart or #name:server (no spaces, `:`, `#` or `/`)"
        ));
    }
    Ok(local.to_string())
}

fn preset(cell: Option<&str>) -> Result<&'static str, String> {
    match cell
        .map(str::trim)
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "private" => Ok("private_chat"),
        "public" => Ok("public_chat"),
        "trusted_private" | "trusted-private" => Ok("trusted_private_chat"),
        other => Err(format!(
            "preset `{other}` is not public, private or trusted_private"
        )),
    }
}

impl CreateRooms {
    fn task(&self, ctx: &Context, cells: &[Cell]) -> Result<RoomTask, String> {
        let localpart = localpart(required(cells, 0, "alias")?, ctx)?;
        let flag = |at: usize, name: &str| -> Result<Option<bool>, String> {
            optional(cells, at, name)?
                .map(|t| boolean(name, t))
                .transpose()
        };
        let space = match optional(cells, 6, "space")?.map(str::trim) {
            None | Some("") => None,
            Some(cell) if cell.starts_with('!') || cell.starts_with('#') => {
                Some(crate::input::ids::room(cell).map_err(|why| format!("space: {why}"))?)
            }
            Some(local) => Some(format!("#{}:{}", localpart_only(local)?, ctx.server_name)),
        };
        let alias = format!("#{localpart}:{}", ctx.server_name);
        if space.as_deref() == Some(alias.as_str()) {
            return Err(format!("space `{alias}` is the room itself"));
        }
        Ok(RoomTask {
            alias,
            localpart,
            name: optional(cells, 1, "name")?.map(String::from),
            topic: optional(cells, 2, "topic")?.map(String::from),
            preset: preset(optional(cells, 3, "preset")?)?,
            directory: flag(4, "directory")?,
            encrypted: flag(5, "encrypted")?,
            space,
            is_space: flag(7, "is_space")?.unwrap_or(false),
            server: ctx.server_name.clone(),
            room_id: Mutex::default(),
        })
    }

    /// The space's room id; an alias that does not resolve is a final failure.
    async fn space_id(&self, hs: &Homeserver, task: &RoomTask) -> Step<Option<String>> {
        match &task.space {
            None => Ok(None),
            Some(space) => Ok(Some(self.rooms.id(hs, space).await?)),
        }
    }

    /// How the room differs from the row: what was (or, without `apply`, would be) changed,
    /// and notes on what is never changed.
    async fn reconcile(
        &self,
        hs: &Homeserver,
        task: &RoomTask,
        room_id: &str,
        apply: bool,
    ) -> Step<(Vec<&'static str>, Vec<String>)> {
        let state = hs.room_state_events(room_id).await?;
        let find = |kind: &str, key: &str| {
            state
                .iter()
                .find(|e| e.kind == kind && e.state_key == key)
                .map(|e| &e.content)
        };
        let (mut changed, mut notes) = (vec![], vec![]);
        for (kind, field, want) in [
            ("m.room.name", "name", &task.name),
            ("m.room.topic", "topic", &task.topic),
        ] {
            let Some(want) = want else { continue };
            if find(kind, "").and_then(|c| c[field].as_str()) != Some(want.as_str()) {
                changed.push(if field == "name" { "name" } else { "topic" });
                if apply {
                    hs.put_state(room_id, kind, "", &json!({ field: want }))
                        .await?;
                }
            }
        }
        let encrypted = find("m.room.encryption", "").is_some();
        match task.encrypted {
            Some(true) if !encrypted => {
                changed.push("encryption");
                if apply {
                    let content = json!({ "algorithm": ENCRYPTION });
                    hs.put_state(room_id, "m.room.encryption", "", &content)
                        .await?;
                }
            }
            Some(false) if encrypted => notes.push(
                "encryption stays on: the sheet says encrypted=no, and Matrix cannot turn \
                 encryption off"
                    .to_string(),
            ),
            _ => {}
        }
        if let Some(parent) = self.space_id(hs, task).await? {
            let old = parents(&state);
            let linked_here = old.contains(&parent);
            let parent_state = hs.room_state_events(&parent).await?;
            let linked_there = parent_state
                .iter()
                .any(|e| e.kind == "m.space.child" && e.state_key == room_id && !empty(&e.content));
            if !linked_here || !linked_there || old.len() > 1 {
                changed.push("space");
                if apply {
                    link(hs, task, room_id, &parent).await?;
                    for gone in old.iter().filter(|p| **p != parent) {
                        hs.put_state(room_id, "m.space.parent", gone, &json!({}))
                            .await?;
                        hs.put_state(gone, "m.space.child", room_id, &json!({}))
                            .await?;
                    }
                }
            }
        }
        if let Some(want) = task.directory
            && hs.in_directory(room_id).await? != want
        {
            changed.push("directory");
            if apply {
                list(hs, room_id, want).await?;
            }
        }
        Ok((changed, notes))
    }
}

/// The spaces a room's `m.space.parent` events name (an emptied event is no link).
fn parents(state: &[StateEvent]) -> Vec<String> {
    state
        .iter()
        .filter(|e| e.kind == "m.space.parent" && !empty(&e.content))
        .map(|e| e.state_key.clone())
        .collect()
}

fn empty(content: &Value) -> bool {
    content.as_object().is_none_or(|o| o.is_empty())
}

/// Both halves of a space link.
async fn link(hs: &Homeserver, task: &RoomTask, room_id: &str, parent: &str) -> Step<()> {
    let via = json!({ "via": [task.server] });
    hs.put_state(parent, "m.space.child", room_id, &via).await?;
    let up = json!({ "via": [task.server], "canonical": true });
    hs.put_state(room_id, "m.space.parent", parent, &up).await?;
    Ok(())
}

/// Lists (or unlists) a room in the directory, and reads it back: Synapse may refuse.
async fn list(hs: &Homeserver, room_id: &str, listed: bool) -> Step<()> {
    let refused = |why: String| {
        format!(
            "room {room_id} is not listed in the room directory: {why}. Synapse's \
             `room_list_publication_rules` (homeserver.yaml) must allow it, e.g. \
             [{{action: allow}}]; then rerun with --on-existing update"
        )
    };
    match hs.set_in_directory(room_id, listed).await {
        Ok(()) => {}
        Err(e @ HsError::Status { status: 403, .. }) => {
            let message = refused(format!("Synapse refused ({e})"));
            return Err(Fail::Final(Outcome::failed(&e).saying(message)));
        }
        Err(e) => return Err(e.into()),
    }
    if hs.in_directory(room_id).await? != listed {
        return Err(Fail::Final(Outcome::failed_because(refused(
            "the change did not take".into(),
        ))));
    }
    Ok(())
}

/// The error of a step that must not end a row whose room exists: its message, with the room.
fn said(outcome: Fail<Outcome>, room_id: &str) -> Fail<Outcome> {
    match outcome {
        Fail::Final(o) => {
            let message = format!("room {room_id} was created, but: {}", o.message);
            Fail::Final(o.saying(message))
        }
        other => other,
    }
}

impl Job for CreateRooms {
    type Task = RoomTask;

    fn name(&self) -> &'static str {
        "create-rooms"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["alias"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &[
            "alias",
            "name",
            "topic",
            "preset",
            "directory",
            "encrypted",
            "space",
            "is_space",
            "room_id",
        ]
    }

    fn acts_as_token_user(&self) -> bool {
        true
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<RoomTask>>) {
        let cells = match &row.cells {
            Ok(cells) => cells,
            Err(why) => {
                if self.pass != Pass::Spaces {
                    out.push(Planned::invalid(
                        "create-rooms",
                        row.number,
                        &[""; 9],
                        why.clone(),
                    ));
                }
                return;
            }
        };
        // Each pass takes its rows; an unreadable is_space cell is the rooms pass's to report.
        let wanted = match self.pass {
            Pass::All => true,
            Pass::Spaces => is_space(cells),
            Pass::Rooms => !is_space(cells),
        };
        if !wanted {
            return;
        }
        let task = match self.task(ctx, cells) {
            Ok(task) => task,
            Err(why) => {
                let mut fields: Vec<&str> = (0..8).map(|at| text(cells, at)).collect();
                fields.push("");
                out.push(Planned::invalid("create-rooms", row.number, &fields, why));
                return;
            }
        };
        let key = Key::new("create-rooms", [task.alias.as_str()]);
        out.push(Planned {
            row: row.number,
            key,
            fields: self.fields(&task),
            task: Ok(task),
        });
    }

    fn fields_found(&self, task: &RoomTask) -> Option<Vec<String>> {
        Some(self.fields(task))
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &RoomTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let existing = match hs.resolve_alias(&task.alias).await {
            Ok(room_id) => Some(room_id),
            Err(HsError::Status { status: 404, .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(room_id) = existing {
            *task.room_id.lock().unwrap() = room_id.clone();
            // A createRoom of this row may have landed: finish what it left undone.
            if intent.in_doubt() {
                self.reconcile(hs, task, &room_id, true).await?;
                return Ok(intent.done_earlier(None, &format!("room {room_id} exists")));
            }
            let apply = self.on_existing == OnExisting::Update;
            if self.on_existing == OnExisting::Fail {
                return Ok(Outcome::failed_because(format!(
                    "alias {} exists already (room {room_id}; --on-existing fail)",
                    task.alias
                )));
            }
            let (changed, notes) = self.reconcile(hs, task, &room_id, apply).await?;
            let mut message = match (changed.is_empty(), apply) {
                (true, _) => "exists already, as the sheet says".to_string(),
                (false, true) => format!("changed: {}", changed.join(", ")),
                (false, false) => format!(
                    "exists already; differs from the sheet in: {} (--on-existing update \
                     changes that)",
                    changed.join(", ")
                ),
            };
            for note in notes {
                message.push_str("; ");
                message.push_str(&note);
            }
            return Ok(match (changed.is_empty(), apply) {
                (false, true) => Outcome::ok(200).saying(message),
                _ => Outcome::unchanged(None, message),
            });
        }
        let parent = self.space_id(hs, task).await?;
        intent.sending(&format!("creating {}", task.alias)).await?;
        let room_id = hs
            .create_room(&create_body(task, parent.as_deref()))
            .await?;
        *task.room_id.lock().unwrap() = room_id.clone();
        if let Some(parent) = &parent {
            let via = json!({ "via": [task.server] });
            hs.put_state(parent, "m.space.child", &room_id, &via)
                .await
                .map_err(|e| said(e.into(), &room_id))?;
        }
        if task.directory == Some(true) {
            list(hs, &room_id, true)
                .await
                .map_err(|e| said(e, &room_id))?;
        }
        Ok(Outcome::ok(200))
    }

    fn describe(&self, task: &RoomTask) -> String {
        format!(
            "POST /_matrix/client/v3/createRoom {}",
            create_body(task, task.space.as_deref())
        )
    }
}

impl CreateRooms {
    /// The row as it was understood, and the room's id: every input column, so that the
    /// failed rows of a results file (`report --failed`) are a complete input again.
    fn fields(&self, task: &RoomTask) -> Vec<String> {
        let flag = |b: Option<bool>| b.map_or("", |b| if b { "true" } else { "false" });
        let preset = match task.preset {
            "public_chat" => "public",
            "trusted_private_chat" => "trusted_private",
            _ => "private",
        };
        vec![
            task.alias.clone(),
            task.name.clone().unwrap_or_default(),
            task.topic.clone().unwrap_or_default(),
            preset.to_string(),
            flag(task.directory).to_string(),
            flag(task.encrypted).to_string(),
            task.space.clone().unwrap_or_default(),
            flag(Some(task.is_space)).to_string(),
            task.room_id.lock().unwrap().clone(),
        ]
    }
}

/// The createRoom body. The directory listing is not asked for here: Synapse ignores it
/// silently where it is not allowed, so it is a separate, checked request.
fn create_body(task: &RoomTask, parent: Option<&str>) -> Value {
    let mut body = json!({
        "room_alias_name": task.localpart,
        "preset": task.preset,
        "visibility": "private",
    });
    if let Some(name) = &task.name {
        body["name"] = json!(name);
    }
    if let Some(topic) = &task.topic {
        body["topic"] = json!(topic);
    }
    if task.is_space {
        body["creation_content"] = json!({ "type": "m.space" });
    }
    let mut state = vec![];
    if task.encrypted == Some(true) {
        state.push(json!({
            "type": "m.room.encryption", "state_key": "", "content": {"algorithm": ENCRYPTION},
        }));
    }
    if let Some(parent) = parent {
        state.push(json!({
            "type": "m.space.parent", "state_key": parent,
            "content": {"via": [task.server], "canonical": true},
        }));
    }
    if !state.is_empty() {
        body["initial_state"] = json!(state);
    }
    body
}

/// A bare space localpart.
fn localpart_only(cell: &str) -> Result<&str, String> {
    if cell.contains([':', ' ', '/']) {
        return Err(format!(
            "space `{cell}` is neither a localpart, an alias (#name:server) nor a room id (!...)"
        ));
    }
    Ok(cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::plan_row;

    fn job(pass: Pass) -> CreateRooms {
        CreateRooms {
            pass,
            on_existing: OnExisting::Skip,
            rooms: Rooms::default(),
        }
    }

    #[test]
    fn rows_plan_to_create_bodies() {
        let row = Row::of(1, &["team", "Team", "", " ", "yes", "yes", "dept", ""]);
        let planned = plan_row(&job(Pass::All), "x.org", &row);
        let task = planned[0].task.as_ref().unwrap();
        assert_eq!(planned[0].key.as_str(), "create-rooms #team:x.org");
        assert_eq!(task.preset, "private_chat", "a blank preset is private");
        assert_eq!(task.space.as_deref(), Some("#dept:x.org"));
        let body = create_body(task, Some("!space"));
        assert_eq!(body["room_alias_name"], "team");
        assert_eq!(body["initial_state"][0]["content"]["algorithm"], ENCRYPTION);
        assert_eq!(body["initial_state"][1]["state_key"], "!space");
        assert!(body.get("creation_content").is_none());
    }

    #[test]
    fn passes_take_spaces_then_rooms() {
        let space = Row::of(1, &["dept", "", "", "", "", "", "", "yes"]);
        let room = Row::of(2, &["team", "", "", "", "", "", "dept", ""]);
        assert_eq!(plan_row(&job(Pass::Spaces), "x.org", &space).len(), 1);
        assert!(plan_row(&job(Pass::Spaces), "x.org", &room).is_empty());
        assert!(plan_row(&job(Pass::Rooms), "x.org", &space).is_empty());
        assert_eq!(plan_row(&job(Pass::Rooms), "x.org", &room).len(), 1);
        let task = plan_row(&job(Pass::Spaces), "x.org", &space)
            .remove(0)
            .task
            .unwrap();
        assert_eq!(
            create_body(&task, None)["creation_content"]["type"],
            "m.space"
        );
    }

    #[test]
    fn bad_cells_are_invalid_and_named() {
        for (cells, needle) in [
            (
                ["#a:other.org", "", "", "", "", "", "", ""],
                "not on this server",
            ),
            (["a b", "", "", "", "", "", "", ""], "alias"),
            (["a", "", "", "secret", "", "", "", ""], "preset"),
            (["a", "", "", "", "maybe", "", "", ""], "directory"),
            (["a", "", "", "", "", "", "#a:x.org", ""], "the room itself"),
        ] {
            let planned = plan_row(&job(Pass::All), "x.org", &Row::of(1, &cells));
            let why = planned[0].task.as_ref().err().unwrap();
            assert!(why.contains(needle), "{cells:?}: {why}");
            assert_eq!(planned[0].fields.len(), 9);
        }
    }
}
