//! The plan of one room: what the sheet wants against what the room's state shows, with every
//! protection applied. Pure: the reads happen before, the changes after.

use std::collections::{HashMap, HashSet};

use crate::homeserver::{CREATOR_POWER, Membership, RoomState};
use crate::input::ids;
use crate::results::Key;

/// What a plan line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Give the token's user power in the room first (`--make-room-admin`).
    MakeRoomAdmin,
    Join,
    Invite,
    /// Remove a member, or withdraw an invitation.
    Kick,
    /// One user's part of the room's one power-levels event.
    SetPower,
    Unchanged,
    /// A member the sheet does not name, left in the room by a protection.
    Keep,
    /// What the sheet asks and cannot be done; the reason says why.
    Fail,
    /// A row of the sheet that cannot be read.
    Invalid,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::MakeRoomAdmin,
        Action::Join,
        Action::Invite,
        Action::Kick,
        Action::SetPower,
        Action::Unchanged,
        Action::Keep,
        Action::Fail,
        Action::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::MakeRoomAdmin => "make-room-admin",
            Action::Join => "join",
            Action::Invite => "invite",
            Action::Kick => "kick",
            Action::SetPower => "set-power",
            Action::Unchanged => "unchanged",
            Action::Keep => "keep",
            Action::Fail => "fail",
            Action::Invalid => "invalid",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// Whether applying it sends a change.
    pub fn changes(self) -> bool {
        matches!(
            self,
            Action::MakeRoomAdmin | Action::Join | Action::Invite | Action::Kick | Action::SetPower
        )
    }

    /// Apply order within a room: power for the token's user first, then arrivals, removals,
    /// the power event, and the lines that send nothing.
    fn order(self) -> u8 {
        match self {
            Action::MakeRoomAdmin => 0,
            Action::Join | Action::Invite => 1,
            Action::Kick => 2,
            Action::SetPower => 3,
            _ => 4,
        }
    }
}

/// One line of the plan (and of the plan file).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    pub user: String,
    /// The room as the sheet names it.
    pub room: String,
    pub before: String,
    pub after: String,
    pub reason: String,
    /// A change that an earlier run recorded as sent (`pending`) and was stopped before its
    /// answer: the room's state shows it done, so it is recorded `ok` and not sent again.
    pub settled: bool,
}

impl Step {
    /// Whether applying it sends a change.
    pub fn changes(&self) -> bool {
        self.action.changes() && !self.settled
    }

    /// Its key in the results file.
    pub fn key(&self) -> Key {
        key(self.action.as_str(), &self.user, &self.room, &self.after)
    }
}

/// A plan line's key: the job, action, user, room and the state after it, so that a rerun
/// that wants another level is new work.
pub fn key(action: &str, user: &str, room: &str, after: &str) -> Key {
    Key::new("sync-members", [action, user, room, after])
}

/// Why a settled line is `ok` without a request.
pub const SETTLED: &str = "done by the run that was stopped after sending it: the room's state \
                           shows it";

/// What the sheet wants of one user in this room, its user cell resolved.
#[derive(Debug, Clone)]
pub struct Want {
    /// The user id, or why the cell names no account (an unknown email address).
    pub user: Result<String, String>,
    /// The cell as given, shown when it could not be resolved.
    pub shown: String,
    pub power: Option<i64>,
}

/// What the server says of a local account that would be joined.
#[derive(Debug, Clone, PartialEq)]
pub enum Account {
    Active,
    Deactivated,
    Missing,
}

/// The options that decide a plan, and who runs it.
pub struct Rules<'a> {
    pub me: &'a str,
    pub server_name: &'a str,
    pub keep: &'a HashSet<String>,
    pub remove_remote: bool,
    pub make_room_admin: bool,
    /// Whether the results file's latest line for a key is `pending` (an earlier run was
    /// stopped after sending that change).
    pub pending: &'a dyn Fn(&Key) -> bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoomPlan {
    pub room: String,
    pub room_id: String,
    pub steps: Vec<Step>,
    /// Members now (joined and invited), for the removal cap's share.
    pub members: usize,
    /// The power changes of the room's one event: user -> level.
    pub power: Vec<(String, i64)>,
    /// Why the token's user cannot do some of the plan, when it cannot.
    pub lacks: Vec<String>,
    pub make_admin: bool,
}

impl RoomPlan {
    pub fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    /// Members this plan removes (settled kicks are done already).
    pub fn removals(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.action == Action::Kick && !s.settled)
            .count()
    }

    /// `#staff: +5 −3 power ~2`, and what else a person must know of the room.
    pub fn summary(&self) -> String {
        let sends = |a: Action| {
            self.steps
                .iter()
                .filter(|s| s.action == a && !s.settled)
                .count()
        };
        let arrivals = sends(Action::Join) + sends(Action::Invite);
        let mut line = format!(
            "{}: +{arrivals} \u{2212}{} power ~{}",
            self.room,
            self.removals(),
            sends(Action::SetPower)
        );
        let mut notes = vec![];
        let settled = self.steps.iter().filter(|s| s.settled).count();
        if settled > 0 {
            notes.push(format!("{settled} done by the run that was stopped"));
        }
        let unchanged = self.count(Action::Unchanged);
        if unchanged > 0 {
            notes.push(format!("{unchanged} unchanged"));
        }
        let kept = self.count(Action::Keep);
        if kept > 0 {
            notes.push(format!("{kept} kept by a protection"));
        }
        let failed = self.count(Action::Fail);
        if failed > 0 {
            notes.push(format!(
                "{failed} cannot be done (see the plan's reason column)"
            ));
        }
        if self.make_admin {
            notes.push("make-room-admin first".into());
        } else if !self.lacks.is_empty() {
            notes.push(format!(
                "{}: rerun with --make-room-admin",
                self.lacks.join("; ")
            ));
        }
        if !notes.is_empty() {
            line.push_str(&format!(" ({})", notes.join(", ")));
        }
        line
    }
}

/// A power level as the plan shows it.
pub fn show_power(level: i64) -> String {
    if level == CREATOR_POWER {
        "creator".into()
    } else {
        level.to_string()
    }
}

fn show_membership(m: Membership) -> &'static str {
    match m {
        Membership::Join => "join",
        Membership::Invite => "invite",
        Membership::Leave => "leave",
        Membership::Ban => "ban",
        Membership::Knock => "knock",
    }
}

/// What the token's user can do in the room, as planned.
struct Me {
    joined: bool,
    level: i64,
}

/// Plans one room. `accounts` says, for local users who would be joined, whether their account
/// can be.
pub fn plan_room(
    room: &str,
    room_id: &str,
    state: &RoomState,
    wants: &[Want],
    accounts: &HashMap<String, Account>,
    rules: &Rules,
) -> RoomPlan {
    let now = Me {
        joined: state.membership(rules.me) == Membership::Join,
        level: state.power(rules.me),
    };
    let (steps, power, lacks) = plan_steps(room, state, wants, accounts, rules, &now);
    let members = state
        .members
        .values()
        .filter(|m| matches!(m, Membership::Join | Membership::Invite))
        .count();
    let mut plan = RoomPlan {
        room: room.to_string(),
        room_id: room_id.to_string(),
        steps,
        members,
        power,
        lacks,
        make_admin: false,
    };
    if plan.lacks.is_empty() || !rules.make_room_admin {
        return plan;
    }
    // make_room_admin gives the token's user the level of the room's most powerful local
    // member (100 from a version 12 creator), and the run then joins it.
    let local = |u: &str| ids::server_of(u) == Some(rules.server_name);
    let from_creator = state.creators.iter().any(|c| local(c)).then_some(100);
    let from_users = state
        .power_levels
        .as_ref()
        .and_then(|pl| pl["users"].as_object())
        .and_then(|users| {
            users
                .iter()
                .filter(|(u, _)| local(u))
                .filter_map(|(_, l)| l.as_i64())
                .max()
        });
    let level = [Some(now.level), from_creator, from_users]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(100);
    let fixed = Me {
        joined: true,
        level,
    };
    let (mut steps, power, _) = plan_steps(room, state, wants, accounts, rules, &fixed);
    steps.insert(
        0,
        Step {
            action: Action::MakeRoomAdmin,
            user: rules.me.to_string(),
            room: room.to_string(),
            before: show_power(now.level),
            after: show_power(fixed.level),
            reason: plan.lacks.join("; "),
            settled: false,
        },
    );
    plan.steps = steps;
    plan.power = power;
    plan.make_admin = true;
    plan
}

/// The steps as the token's user `me` could do them, the power changes, and what it lacks.
fn plan_steps(
    room: &str,
    state: &RoomState,
    wants: &[Want],
    accounts: &HashMap<String, Account>,
    rules: &Rules,
    me: &Me,
) -> (Vec<Step>, Vec<(String, i64)>, Vec<String>) {
    let mut steps = vec![];
    let mut power = vec![];
    let mut lacks: Vec<String> = vec![];
    let who = rules.me;
    // Why the token's user cannot do what `needs` a level, if it cannot.
    let lack = |what: &str, needs: i64| -> Option<String> {
        if !me.joined {
            Some(format!("{who} is not in the room"))
        } else if me.level < needs {
            Some(format!(
                "{who} has power {} here, {what} needs {needs}",
                show_power(me.level)
            ))
        } else {
            None
        }
    };
    let mut step = |action, user: &str, before: &str, after: &str, reason: String| {
        let next = Step {
            action,
            user: user.to_string(),
            room: room.to_string(),
            before: before.to_string(),
            after: after.to_string(),
            reason,
            settled: false,
        };
        steps.push(next);
    };
    let blocked = |lacks: &mut Vec<String>, why: String| -> String {
        if !lacks.contains(&why) {
            lacks.push(why.clone());
        }
        format!("{why}: rerun with --make-room-admin")
    };
    let done = |action: Action, user: &str, after: &str| {
        (rules.pending)(&key(action.as_str(), user, room, after))
    };
    let public = state.join_rule.as_deref() == Some("public");
    let invite_level = state.needed("invite", 0);
    let mut wanted = HashSet::new();
    for want in wants {
        let user = match &want.user {
            Ok(user) => user.as_str(),
            Err(why) => {
                step(Action::Fail, &want.shown, "", "", why.clone());
                continue;
            }
        };
        // Two cells may name one account (its id and its email address).
        if !wanted.insert(user) {
            continue;
        }
        let local = ids::server_of(user) == Some(rules.server_name);
        let membership = state.membership(user);
        let was = show_membership(membership);
        match membership {
            Membership::Join if done(Action::Join, user, "join") => {
                step(Action::Join, user, "", "join", SETTLED.into())
            }
            Membership::Join => step(Action::Unchanged, user, was, was, String::new()),
            Membership::Invite if !local && done(Action::Invite, user, "invite") => {
                step(Action::Invite, user, "", "invite", SETTLED.into())
            }
            Membership::Invite if !local => {
                step(Action::Unchanged, user, was, was, "invited".into())
            }
            Membership::Ban => step(
                Action::Fail,
                user,
                was,
                "join",
                "banned from the room: unban first".into(),
            ),
            _ if local => match accounts.get(user) {
                Some(Account::Deactivated) => step(
                    Action::Fail,
                    user,
                    was,
                    "join",
                    "account is deactivated".into(),
                ),
                Some(Account::Missing) => {
                    step(Action::Fail, user, was, "join", "no such account".into())
                }
                _ => {
                    let needs = (!public).then(|| lack("inviting", invite_level)).flatten();
                    match needs {
                        Some(why) => {
                            let why = blocked(&mut lacks, why);
                            step(Action::Fail, user, was, "join", why)
                        }
                        None => step(Action::Join, user, was, "join", String::new()),
                    }
                }
            },
            _ => match lack("inviting", invite_level) {
                Some(why) => {
                    let why = blocked(&mut lacks, why);
                    step(Action::Fail, user, was, "invite", why)
                }
                None => step(
                    Action::Invite,
                    user,
                    was,
                    "invite",
                    "remote user: invited (the admin API joins local users only)".into(),
                ),
            },
        }
        if let Some(target) = want.power {
            let current = state.power(user);
            if current == target {
                let level = show_power(target);
                if done(Action::SetPower, user, &level) {
                    step(Action::SetPower, user, "", &level, SETTLED.into());
                }
                continue;
            }
            let (before, after) = (show_power(current), show_power(target));
            let refusal = if state.creators.iter().any(|c| c == user) {
                if target >= 100 {
                    continue; // a creator outranks every level already
                }
                Some(format!(
                    "{user} created the room (version 12): creators outrank every power level \
                     and cannot be lowered"
                ))
            } else if user == who && target < current {
                step(
                    Action::Keep,
                    user,
                    &before,
                    &after,
                    "the token's own power level is never lowered".into(),
                );
                continue;
            } else if let Some(why) = lack("changing power levels", state.needed_for_power_levels())
            {
                Some(blocked(&mut lacks, why))
            } else if target > me.level {
                Some(format!(
                    "power {target} is above the token's own level ({}): Synapse would refuse",
                    show_power(me.level)
                ))
            } else if user != who && current >= me.level {
                Some(format!(
                    "{user} has power {before}, not below the token's own ({})",
                    show_power(me.level)
                ))
            } else {
                None
            };
            match refusal {
                Some(why) => step(Action::Fail, user, &before, &after, why),
                None => {
                    power.push((user.to_string(), target));
                    step(Action::SetPower, user, &before, &after, String::new())
                }
            }
        }
    }
    let mut members: Vec<(&String, &Membership)> = state
        .members
        .iter()
        .filter(|(u, _)| !wanted.contains(u.as_str()))
        .collect();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let (members, gone): (Vec<_>, Vec<_>) = members
        .into_iter()
        .partition(|(_, m)| matches!(m, Membership::Join | Membership::Invite));
    for (user, _) in gone {
        if done(Action::Kick, user, "leave") {
            step(Action::Kick, user, "", "leave", SETTLED.into());
        }
    }
    let kick_level = state.needed("kick", 50);
    for (user, membership) in members {
        let was = show_membership(*membership);
        let local = ids::server_of(user) == Some(rules.server_name);
        let level = state.power(user);
        let keep = if user == who {
            Some("the token's own user is never removed".to_string())
        } else if rules.keep.contains(user.as_str()) {
            Some("kept: --keep".to_string())
        } else if !local && !rules.remove_remote {
            Some("remote user: kept (--remote remove removes them)".to_string())
        } else {
            None
        };
        if let Some(why) = keep {
            step(Action::Keep, user, was, was, why);
        } else if let Some(why) = lack("kicking", kick_level) {
            let why = blocked(&mut lacks, why);
            step(Action::Fail, user, was, "leave", why);
        } else if level >= me.level {
            let why = format!(
                "{user} has power {}, not below the token's own ({}): cannot be removed",
                show_power(level),
                show_power(me.level)
            );
            step(Action::Fail, user, was, "leave", why);
        } else {
            step(Action::Kick, user, was, "leave", "not in the sheet".into());
        }
    }
    for s in &mut steps {
        s.settled = s.reason == SETTLED;
    }
    (steps, power, lacks)
}

/// The most members a plan may remove from a room of `members` unless `--max-removals` says:
/// 10, or a tenth of the room, whichever is more.
pub fn default_max_removals(members: usize) -> usize {
    10.max(members / 10)
}

/// The steps of every room in apply order: each room's steps sorted by [`Action::order`], then
/// the rooms taken in turn, one step each, so that many rooms do not queue behind one.
pub fn interleave(rooms: &[RoomPlan]) -> Vec<Step> {
    let mut queues: Vec<Vec<Step>> = rooms
        .iter()
        .map(|r| {
            let mut steps = r.steps.clone();
            steps.sort_by_key(|s| s.action.order());
            steps.reverse(); // popped from the end
            steps
        })
        .collect();
    let mut out = vec![];
    loop {
        let mut any = false;
        for queue in &mut queues {
            if let Some(step) = queue.pop() {
                out.push(step);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ME: &str = "@admin:x.org";

    fn state(
        members: &[(&str, Membership)],
        users: serde_json::Value,
        creators: &[&str],
    ) -> RoomState {
        RoomState {
            members: members.iter().map(|(u, m)| (u.to_string(), *m)).collect(),
            join_rule: Some("invite".into()),
            power_levels: Some(
                json!({"users": users, "users_default": 0, "kick": 50, "invite": 0}),
            ),
            creators: creators.iter().map(|c| c.to_string()).collect(),
        }
    }

    fn want(user: &str, power: Option<i64>) -> Want {
        Want {
            user: Ok(user.to_string()),
            shown: user.to_string(),
            power,
        }
    }

    fn plan(state: &RoomState, wants: &[Want], keep: &[&str], fix: bool) -> RoomPlan {
        let keep: HashSet<String> = keep.iter().map(|k| k.to_string()).collect();
        let rules = Rules {
            me: ME,
            server_name: "x.org",
            keep: &keep,
            remove_remote: false,
            make_room_admin: fix,
            pending: &|_| false,
        };
        plan_room("#r:x.org", "!r", state, wants, &HashMap::new(), &rules)
    }

    fn actions(plan: &RoomPlan) -> Vec<(Action, &str)> {
        plan.steps
            .iter()
            .map(|s| (s.action, s.user.as_str()))
            .collect()
    }

    #[test]
    fn joins_kicks_keeps_and_one_power_change_list() {
        use Membership::*;
        let s = state(
            &[
                (ME, Join),
                ("@a:x.org", Join),
                ("@gone:x.org", Join),
                ("@bot:x.org", Join),
                ("@far:y.org", Join),
                ("@inv:x.org", Invite),
            ],
            json!({}),
            &[ME],
        );
        let p = plan(
            &s,
            &[
                want("@a:x.org", Some(50)),
                want("@new:x.org", Some(50)),
                want("@rem:y.org", None),
            ],
            &["@bot:x.org"],
            false,
        );
        assert_eq!(
            actions(&p),
            [
                (Action::Unchanged, "@a:x.org"),
                (Action::SetPower, "@a:x.org"),
                (Action::Join, "@new:x.org"),
                (Action::SetPower, "@new:x.org"),
                (Action::Invite, "@rem:y.org"),
                (Action::Keep, ME),
                (Action::Keep, "@bot:x.org"),
                (Action::Keep, "@far:y.org"),
                (Action::Kick, "@gone:x.org"),
                (Action::Kick, "@inv:x.org"),
            ]
        );
        assert_eq!(
            p.power,
            [("@a:x.org".to_string(), 50), ("@new:x.org".to_string(), 50)]
        );
        assert!(p.lacks.is_empty());
        assert_eq!(
            p.summary(),
            "#r:x.org: +2 \u{2212}2 power ~2 (1 unchanged, 3 kept by a protection)"
        );
    }

    #[test]
    fn the_token_user_is_never_lowered_nor_anyone_raised_above_it() {
        use Membership::*;
        let s = state(
            &[(ME, Join), ("@peer:x.org", Join), ("@a:x.org", Join)],
            json!({ME: 50, "@peer:x.org": 50}),
            &["@creator:x.org"],
        );
        let p = plan(
            &s,
            &[
                want(ME, Some(0)),
                want("@a:x.org", Some(100)),
                want("@peer:x.org", Some(0)),
                want("@creator:x.org", Some(0)),
            ],
            &[],
            false,
        );
        let reasons: Vec<_> = p
            .steps
            .iter()
            .map(|s| (s.action, s.reason.as_str()))
            .collect();
        assert_eq!(reasons[1].0, Action::Keep);
        assert!(reasons[1].1.contains("never lowered"));
        assert_eq!(reasons[3].0, Action::Fail);
        assert!(
            reasons[3].1.contains("above the token's own level (50)"),
            "{reasons:?}"
        );
        assert_eq!(reasons[5].0, Action::Fail);
        assert!(reasons[5].1.contains("not below"), "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.1.contains("creators outrank")),
            "{reasons:?}"
        );
        assert!(p.power.is_empty());
    }

    #[test]
    fn lacking_power_fails_with_the_hint_or_plans_make_room_admin() {
        use Membership::*;
        let s = state(
            &[("@owner:x.org", Join), ("@gone:x.org", Join)],
            json!({"@owner:x.org": 100}),
            &[],
        );
        let p = plan(&s, &[want("@new:x.org", Some(50))], &[], false);
        assert!(
            p.steps
                .iter()
                .all(|s| s.action == Action::Fail || s.action == Action::Keep),
            "{:?}",
            p.steps
        );
        assert!(
            p.steps[0]
                .reason
                .contains("not in the room: rerun with --make-room-admin")
        );
        assert!(p.summary().contains("--make-room-admin"));
        let p = plan(&s, &[want("@new:x.org", Some(50))], &[], true);
        assert_eq!(
            actions(&p),
            [
                (Action::MakeRoomAdmin, ME),
                (Action::Join, "@new:x.org"),
                (Action::SetPower, "@new:x.org"),
                (Action::Kick, "@gone:x.org"),
                (Action::Fail, "@owner:x.org"),
            ]
        );
        assert_eq!(p.steps[0].after, "100");
    }

    #[test]
    fn deactivated_and_unresolved_users_fail() {
        let s = state(&[(ME, Membership::Join)], json!({}), &[ME]);
        let keep = HashSet::new();
        let rules = Rules {
            me: ME,
            server_name: "x.org",
            keep: &keep,
            remove_remote: false,
            make_room_admin: false,
            pending: &|_| false,
        };
        let accounts = HashMap::from([("@old:x.org".to_string(), Account::Deactivated)]);
        let wants = [
            want("@old:x.org", None),
            Want {
                user: Err("no account has the email address a@b.org".into()),
                shown: "a@b.org".into(),
                power: None,
            },
        ];
        let p = plan_room("#r:x.org", "!r", &s, &wants, &accounts, &rules);
        assert_eq!(p.steps[0].action, Action::Fail);
        assert_eq!(p.steps[0].reason, "account is deactivated");
        assert_eq!(p.steps[1].user, "a@b.org");
    }

    #[test]
    fn interleaves_rooms_in_apply_order() {
        let step = |action, user: &str, room: &str| Step {
            action,
            user: user.into(),
            room: room.into(),
            before: String::new(),
            after: String::new(),
            reason: String::new(),
            settled: false,
        };
        let room = |name: &str, steps: Vec<Step>| RoomPlan {
            room: name.into(),
            room_id: name.into(),
            steps,
            members: 0,
            power: vec![],
            lacks: vec![],
            make_admin: false,
        };
        let a = room(
            "a",
            vec![
                step(Action::Unchanged, "1", "a"),
                step(Action::Kick, "2", "a"),
                step(Action::Join, "3", "a"),
            ],
        );
        let b = room("b", vec![step(Action::Join, "4", "b")]);
        let order: Vec<_> = interleave(&[a, b]).into_iter().map(|s| s.user).collect();
        assert_eq!(order, ["3", "4", "2", "1"]);
    }

    #[test]
    fn changes_a_stopped_run_sent_are_settled_not_resent() {
        use Membership::*;
        let s = state(
            &[
                (ME, Join),
                ("@in:x.org", Join),
                ("@out:x.org", Leave),
                ("@p:x.org", Join),
            ],
            json!({"@p:x.org": 50}),
            &[ME],
        );
        let keep = HashSet::new();
        let pending = |k: &Key| {
            [
                "sync-members join @in:x.org #r:x.org join",
                "sync-members kick @out:x.org #r:x.org leave",
                "sync-members set-power @p:x.org #r:x.org 50",
            ]
            .contains(&k.as_str())
        };
        let rules = Rules {
            me: ME,
            server_name: "x.org",
            keep: &keep,
            remove_remote: false,
            make_room_admin: false,
            pending: &pending,
        };
        let wants = [want("@in:x.org", None), want("@p:x.org", Some(50))];
        let p = plan_room("#r:x.org", "!r", &s, &wants, &HashMap::new(), &rules);
        let settled: Vec<_> = p
            .steps
            .iter()
            .filter(|s| s.settled)
            .map(|s| (s.action, s.user.as_str()))
            .collect();
        assert_eq!(
            settled,
            [
                (Action::Join, "@in:x.org"),
                (Action::SetPower, "@p:x.org"),
                (Action::Kick, "@out:x.org"),
            ]
        );
        assert!(!p.steps.iter().any(Step::changes), "{:?}", p.steps);
        assert_eq!(p.removals(), 0);
        assert!(p.power.is_empty());
    }

    #[test]
    fn removal_cap_default() {
        assert_eq!(default_max_removals(12), 10);
        assert_eq!(default_max_removals(500), 50);
    }
}
