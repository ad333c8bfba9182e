//! `sync-members`: make the membership (and, with a `power` column, the power levels) of every
//! room the sheet or `--room` names equal to the sheet, through a plan.
//!
//! Reads, once per run: each alias (`GET /_matrix/client/v3/directory/room/<alias>`), each
//! room's state (`GET /_synapse/admin/v1/rooms/<room_id>/state`: memberships, join rule, power
//! levels, the create event for version 12 creators), each email address (admin threepid
//! lookup) and each local account that would be joined (`GET /_synapse/admin/v2/users/<id>`,
//! for deactivated accounts). Changes: `POST /_synapse/admin/v1/join/<room>` for local users,
//! `POST /_matrix/client/v3/rooms/<room_id>/invite` for remote ones, `.../kick` (as the token's
//! user, with `--reason`) for members the sheet does not name, one
//! `PUT /_matrix/client/v3/rooms/<room_id>/state/m.room.power_levels/` per room, and with
//! `--make-room-admin` `POST /_synapse/admin/v1/rooms/<room_id>/make_room_admin`.
//!
//! The plan is computed from the server's state on every run, so a rerun after a crash does
//! what is missing, and a rerun on a synced server sends nothing but the reads.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::connect;
use crate::exit::Exit;
use crate::input::ids::{self, UserRef};
use crate::input::{Binder, Input, InputSpec};
use crate::job::sync::apply::Apply;
use crate::job::sync::plan::{self, Action, RoomPlan, Rules, Step};
use crate::job::sync::reads::{self, Reader};
use crate::job::sync::{plan_file, sheet};
use crate::job::user_room::checked_rooms;
use crate::results::{Key, Latest, Status};
use crate::rows::Source;

/// Make room membership and power levels match a sheet, with a plan (columns: user, room, [power])
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Make the members (and, with a power column, the power levels) of every room \
        the sheet or --room names equal to the sheet. No other room is touched; spaces are rooms.\n\n\
        Columns: user (id, localpart or email), room (id or alias) and an optional power (a \
        number, admin = 100, moderator = 50, default = 0; empty leaves the level as it is). \
        With --room, a sheet of users means \"exactly these users in each named room\".\n\n\
        For each room the current state is read once and a plan is made: join (local users, \
        admin API), invite (remote users), kick (members not in the sheet, or their \
        invitation withdrawn, as the token's user), set-power (all changes of a room in ONE \
        m.room.power_levels event), unchanged, keep (a protection), fail (what cannot be \
        done, and why). The plan goes to --plan (a CSV) and a summary per room to the \
        terminal; then, after confirmation, it is applied with a results file like every job.\n\n\
        Never removed: the token's own user, --keep and --keep-file users, and remote users \
        unless --remote remove. The token's own level is never lowered, and nobody is raised \
        above it. A plan that removes more than --max-removals from any room (default: 10 \
        or a tenth of the room, whichever is more) stops before any change, exit 2. A sheet \
        with an unreadable row stops before any change too: a sync of part of a sheet would \
        remove the people on the unreadable rows.",
    after_help = "Examples:\n  \
        synbatch sync-members staff.csv --dry-run            # writes staff.plan.csv, changes nothing\n  \
        synbatch sync-members staff.csv --keep @bot:example.org --reason 'HR sync' --yes\n  \
        synbatch sync-members engineers.csv --room '#eng:example.org' --room '#eng-space:example.org'\n  \
        synbatch sync-members staff.csv --make-room-admin --max-removals 40"
)]
pub struct Args {
    /// Every user of the sheet belongs in this room too (repeatable)
    #[arg(long = "room", value_name = "ROOM")]
    pub rooms: Vec<String>,

    /// Never remove this user (repeatable)
    #[arg(long, value_name = "USER")]
    pub keep: Vec<String>,

    /// Never remove the users in FILE (one a line; blank lines and lines from # ignored)
    #[arg(long, value_name = "FILE")]
    pub keep_file: Option<PathBuf>,

    /// Users of other servers not in the sheet: keep them, or remove them too
    #[arg(long, value_enum, default_value_t = Remote::Keep)]
    pub remote: Remote,

    /// Stop before any change if a room would lose more members than this
    /// [default: 10, or a tenth of the room if more]
    #[arg(long, value_name = "N")]
    pub max_removals: Option<usize>,

    /// Where the token's user lacks power (or is not in the room), make it room admin first
    /// (POST /_synapse/admin/v1/rooms/<room>/make_room_admin)
    #[arg(long)]
    pub make_room_admin: bool,

    /// Reason given with each kick and invitation
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// The plan file [default: <input stem>.plan.csv beside the input]
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    #[command(flatten)]
    pub rows: RowArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Remote {
    Keep,
    Remove,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    connect::check(&args.rows.server)?;
    let extra_rooms = checked_rooms("--room", &args.rooms).map_err(Exit::Usage)?;
    let keep_lines = match &args.keep_file {
        Some(path) => read_keep_file(path)?,
        None => vec![],
    };
    let input_path = args.rows.input.as_ref().filter(|p| p.as_os_str() != "-");
    let plan_path = args
        .plan
        .clone()
        .unwrap_or_else(|| plan_file::default_path(input_path.map(PathBuf::as_path)));
    let spec = InputSpec {
        path: input_path.cloned(),
        format: args.rows.format,
        delimiter: args.rows.delimiter,
        encoding: args.rows.encoding.clone(),
        sheet: args.rows.sheet.clone(),
    };
    let binder = Binder::new(sheet::FIELDS, &args.rows.columns)?;
    let required: &[&str] = if extra_rooms.is_empty() {
        &["user", "room"]
    } else {
        &["user"]
    };
    let input = Input::open(&spec, binder, required)?;

    let conn = connect::connect(&args.rows.server, 1, true).await?;
    let (hs, me, server_name) = (conn.hs, conn.me, conn.server_name);
    let mut keep = HashSet::new();
    for (what, user) in args
        .keep
        .iter()
        .map(|u| ("--keep", u))
        .chain(keep_lines.iter().map(|u| ("--keep-file", u)))
    {
        match ids::user(user, &server_name) {
            Ok(UserRef::Mxid(id)) => keep.insert(id),
            _ => {
                return Err(Exit::usage(format!(
                    "{what}: `{user}` is not a user id or localpart"
                )));
            }
        };
    }
    let sheet = sheet::read(input, &server_name, &extra_rooms)?;
    let reader = Reader::new(&hs, args.rows.run.retries);

    let steps_invalid: Vec<Step> = sheet
        .invalid
        .iter()
        .map(|b| Step {
            action: Action::Invalid,
            user: b.user.clone(),
            room: b.room.clone(),
            before: String::new(),
            after: String::new(),
            reason: b.why.clone(),
            settled: false,
        })
        .collect();
    if !steps_invalid.is_empty() {
        plan_file::write(&plan_path, &steps_invalid).map_err(Exit::Usage)?;
        for bad in &sheet.invalid {
            eprintln!("invalid: {}", bad.why);
        }
        return Err(Exit::usage(format!(
            "{} row(s) of {} cannot be read (listed above and in {}): nothing was planned or \
             changed. A sync of part of a sheet would remove the people on those rows; fix \
             them and rerun",
            sheet.invalid.len(),
            spec.name(),
            plan_path.display()
        )));
    }

    let rooms = reads::rooms(&reader, sheet.rooms, &server_name).await?;

    // Changes a stopped run sent without recording their answer: where the room shows them
    // done, their lines are settled as `ok` rather than left `pending`.
    let latest = match args.rows.run.dry_run || args.rows.run.check {
        true => Latest::default(),
        false => {
            let path = args.rows.run.results.clone().unwrap_or_else(|| {
                crate::rows::plan::default_results_path(
                    input_path.map(PathBuf::as_path),
                    "sync-members",
                )
            });
            Latest::load(&path, "sync-members").map_err(Exit::usage)?
        }
    };
    let pending = |key: &Key| latest.get(key.as_str()) == Some(Status::Pending);
    let rules = Rules {
        pending: &pending,
        me: &me,
        server_name: &server_name,
        keep: &keep,
        remove_remote: args.remote == Remote::Remove,
        make_room_admin: args.make_room_admin,
    };
    let plans: Vec<RoomPlan> = rooms
        .rooms
        .iter()
        .map(|r| plan::plan_room(&r.name, &r.id, &r.state, &r.wants, &rooms.accounts, &rules))
        .collect();
    let steps = plan::interleave(&plans);
    plan_file::write(&plan_path, &steps).map_err(Exit::Usage)?;
    let quiet = args.rows.run.quiet;
    for p in &plans {
        if !quiet || p.steps.iter().any(Step::changes) {
            eprintln!("{}", p.summary());
        }
    }
    let changes = steps.iter().filter(|s| s.changes()).count();
    eprintln!("plan: {} ({changes} changes)", plan_path.display());

    let over: Vec<String> = plans
        .iter()
        .filter_map(|p| {
            let cap = args
                .max_removals
                .unwrap_or_else(|| plan::default_max_removals(p.members));
            (p.removals() > cap).then(|| {
                format!(
                    "{} would lose {} of its {} members (the limit is {cap})",
                    p.room,
                    p.removals(),
                    p.members
                )
            })
        })
        .collect();
    if !over.is_empty() {
        return Err(Exit::usage(format!(
            "stopped before any change: {}. Check the sheet and the plan ({}); if the removals \
             are meant, rerun with --max-removals {}",
            over.join("; "),
            plan_path.display(),
            plans.iter().map(RoomPlan::removals).max().unwrap_or(0)
        )));
    }
    if args.rows.run.dry_run || args.rows.run.check {
        eprintln!("dry run: the plan is written; nothing was changed");
        let fails = steps.iter().filter(|s| s.action == Action::Fail).count();
        // --check answers "would it all work?" like the row jobs' check.
        if args.rows.run.check && fails > 0 {
            eprintln!("check: {fails} line(s) of the plan would fail (action `fail`)");
            return Err(Exit::RowsFailed);
        }
        return Ok(());
    }
    if changes > 0 {
        let homeserver = args
            .rows
            .server
            .homeserver
            .as_deref()
            .unwrap_or("the homeserver");
        let what = format!(
            "apply the plan {} ({changes} changes in {} rooms) to {homeserver}",
            plan_path.display(),
            plans.len()
        );
        if !args.rows.run.yes && std::io::stdin().is_terminal() {
            eprintln!("(the plan lists each change with its reason)");
        }
        crate::confirm::confirm(&what, args.rows.run.yes).map_err(Exit::Usage)?;
    }
    let job = Apply::new(&plans, &me, args.reason.clone());
    drop(hs);
    crate::rows::run_from(job, &args.rows, Source::File(plan_path)).await
}

/// `--keep-file`: one user a line; blank lines and `#` comments ignored.
pub fn read_keep_file(path: &std::path::Path) -> Result<Vec<String>, Exit> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::usage(format!("--keep-file {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}
