//! The sheet of a sync: who should be in which room, with which power. Read whole before
//! anything is planned (a sync compares the sheet with each room's members, so it needs all of
//! a room's rows at once); the file is still read a row at a time, and what is kept is bounded
//! by the rooms' memberships, not by the file's size.

use std::collections::HashMap;

use crate::input::ids::{self, UserRef};
use crate::input::{Cell, FieldDef, Input, InputError, ROOM, Row, USER};
use crate::job::{optional, required};

/// The optional power column: a number, or `admin` (100), `moderator` (50), `default` (0).
pub const POWER: FieldDef = FieldDef {
    name: "power",
    aliases: &["powerlevel", "level", "role"],
    fallback: &[],
};

pub const FIELDS: &[FieldDef] = &[USER, ROOM, POWER];

/// One user the sheet wants in a room.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// The first data row that names this user for this room.
    pub row: u64,
    pub user: UserRef,
    /// `None`: the sheet says nothing of power, the user's level stays as it is.
    pub power: Option<i64>,
}

/// A room the sheet names, as it names it first, and who belongs in it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomWant {
    pub room: String,
    pub users: Vec<Wanted>,
}

/// A row that cannot be read, with why (naming the row and the field).
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    pub row: u64,
    pub user: String,
    pub room: String,
    pub why: String,
}

#[derive(Debug, Default)]
pub struct Sheet {
    pub rooms: Vec<RoomWant>,
    pub invalid: Vec<BadRow>,
}

/// `admin` = 100, `moderator` = 50, `default` = 0, or a whole number.
pub fn power(text: &str) -> Result<i64, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "admin" => Ok(100),
        "moderator" | "mod" => Ok(50),
        "default" | "user" => Ok(0),
        other => other
            .parse::<i64>()
            .ok()
            .filter(|n| n.abs() <= (1 << 53))
            .ok_or_else(|| {
                format!(
                    "power `{text}` is not a power level (a whole number, admin, moderator or \
                     default)"
                )
            }),
    }
}

/// Reads every row: each row's user goes to its room and to each of `extra_rooms` (`--room`).
pub fn read(input: Input, server_name: &str, extra_rooms: &[String]) -> Result<Sheet, InputError> {
    let mut sheet = Sheet::default();
    // room -> (index in sheet.rooms, user -> index in that room's users)
    let mut index: HashMap<String, (usize, HashMap<String, usize>)> = HashMap::new();
    input.for_each_row(|row| {
        add_row(&mut sheet, &mut index, row, server_name, extra_rooms);
        true
    })?;
    Ok(sheet)
}

fn add_row(
    sheet: &mut Sheet,
    index: &mut HashMap<String, (usize, HashMap<String, usize>)>,
    row: Row,
    server_name: &str,
    extra_rooms: &[String],
) {
    let bad = |user: &str, room: &str, why: String| BadRow {
        row: row.number,
        user: user.to_string(),
        room: room.to_string(),
        why: format!("row {}: {why}", row.number),
    };
    let cells = match &row.cells {
        Ok(cells) => cells,
        Err(why) => {
            sheet.invalid.push(bad("", "", why.clone()));
            return;
        }
    };
    let shown = |at: usize| match &cells[at] {
        Cell::Text(t) => t.clone(),
        _ => String::new(),
    };
    let user = match required(cells, 0, "user").and_then(|u| ids::user(u, server_name)) {
        Ok(user) => user,
        Err(why) => {
            sheet.invalid.push(bad(&shown(0), &shown(1), why));
            return;
        }
    };
    let power = match optional(cells, 2, "power").and_then(|p| p.map(power).transpose()) {
        Ok(power) => power,
        Err(why) => {
            sheet.invalid.push(bad(user.as_str(), &shown(1), why));
            return;
        }
    };
    let mut rooms = vec![];
    match optional(cells, 1, "room").and_then(|r| r.map(ids::room).transpose()) {
        Ok(Some(room)) => rooms.push(room),
        Ok(None) => {}
        Err(why) => {
            sheet.invalid.push(bad(user.as_str(), &shown(1), why));
            return;
        }
    }
    for room in extra_rooms {
        if !rooms.contains(room) {
            rooms.push(room.clone());
        }
    }
    if rooms.is_empty() {
        let why = "missing room: the cell is empty and no --room was given".to_string();
        sheet.invalid.push(bad(user.as_str(), "", why));
        return;
    }
    for room in rooms {
        let (at, users) = index.entry(room.clone()).or_insert_with(|| {
            sheet.rooms.push(RoomWant {
                room: room.clone(),
                users: vec![],
            });
            (sheet.rooms.len() - 1, HashMap::new())
        });
        let wants = &mut sheet.rooms[*at].users;
        match users.get(user.as_str()) {
            None => {
                users.insert(user.as_str().to_string(), wants.len());
                wants.push(Wanted {
                    row: row.number,
                    user: user.clone(),
                    power,
                });
            }
            Some(&i) => {
                let earlier = &mut wants[i];
                match (earlier.power, power) {
                    (_, None) => {}
                    (a, b) if a == b => {}
                    (None, b) => earlier.power = b,
                    (Some(a), Some(b)) => {
                        let why = format!(
                            "power {b} for {} in {room} contradicts row {} (power {a})",
                            user.as_str(),
                            earlier.row
                        );
                        sheet.invalid.push(bad(user.as_str(), &room, why));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(rows: &[&[&str]], extra: &[&str]) -> Sheet {
        let mut sheet = Sheet::default();
        let mut index = HashMap::new();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for (i, cells) in rows.iter().enumerate() {
            let row = Row::of(i as u64 + 1, cells);
            add_row(&mut sheet, &mut index, row, "x.org", &extra);
        }
        sheet
    }

    #[test]
    fn power_words_and_numbers() {
        assert_eq!(power("Admin"), Ok(100));
        assert_eq!(power("moderator"), Ok(50));
        assert_eq!(power("default"), Ok(0));
        assert_eq!(power(" 75 "), Ok(75));
        assert!(power("boss").unwrap_err().contains("`boss`"));
        assert!(power("1e400").is_err());
    }

    #[test]
    fn rooms_keep_their_first_order_and_repeats_merge() {
        let s = sheet(
            &[
                &["alice", "#a:x.org", ""],
                &["bob", "#b:x.org", "moderator"],
                &["alice", "#a:x.org", "50"],
                &["carol", "#a:x.org", ""],
            ],
            &[],
        );
        assert!(s.invalid.is_empty(), "{:?}", s.invalid);
        assert_eq!(s.rooms.len(), 2);
        assert_eq!(s.rooms[0].room, "#a:x.org");
        let a: Vec<_> = s.rooms[0]
            .users
            .iter()
            .map(|w| (w.user.as_str(), w.power))
            .collect();
        assert_eq!(a, [("@alice:x.org", Some(50)), ("@carol:x.org", None)]);
        assert_eq!(s.rooms[1].users[0].power, Some(50));
    }

    #[test]
    fn bad_rows_name_row_and_field() {
        let s = sheet(
            &[
                &["alice", "#a:x.org", "boss"],
                &["", "#a:x.org", ""],
                &["bob", "", ""],
                &["carol", "#a:x.org", "100"],
                &["carol", "#a:x.org", "0"],
            ],
            &[],
        );
        let whys: Vec<_> = s.invalid.iter().map(|b| b.why.as_str()).collect();
        assert_eq!(whys.len(), 4, "{whys:?}");
        assert!(whys[0].starts_with("row 1: power `boss`"), "{}", whys[0]);
        assert!(whys[1].starts_with("row 2: missing user"), "{}", whys[1]);
        assert!(whys[2].contains("missing room"), "{}", whys[2]);
        assert!(whys[3].contains("contradicts row 4"), "{}", whys[3]);
    }

    #[test]
    fn room_option_takes_every_user() {
        let s = sheet(&[&["alice", "", ""], &["bob", "", ""]], &["#a:x.org", "!r"]);
        assert_eq!(s.rooms.len(), 2);
        assert_eq!(s.rooms[1].room, "!r");
        assert_eq!(s.rooms[1].users.len(), 2);
    }
}
