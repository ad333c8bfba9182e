//! Reading a row's cells: required and optional text, yes/no values, local users.

use super::Context;
use crate::input::Cell;
use crate::input::ids::{self, UserRef};

/// Why admin-API jobs refuse remote users.
pub const ADMIN_API_LOCAL: &str = "the admin API only manages local accounts";

/// A required cell's text, or why the row is invalid.
pub fn required<'r>(row: &'r [Cell], at: usize, field: &str) -> Result<&'r str, String> {
    match &row[at] {
        Cell::Text(text) => Ok(text),
        Cell::Empty => Err(format!("missing {field}: the cell is empty")),
        Cell::Bad(why) => Err(format!("{field} {why}")),
    }
}

/// An optional cell's text.
pub fn optional<'r>(row: &'r [Cell], at: usize, field: &str) -> Result<Option<&'r str>, String> {
    match &row[at] {
        Cell::Text(text) => Ok(Some(text)),
        Cell::Empty => Ok(None),
        Cell::Bad(why) => Err(format!("{field} {why}")),
    }
}

/// A cell as the results file shows it: its text, or nothing.
pub fn text(row: &[Cell], at: usize) -> &str {
    match &row[at] {
        Cell::Text(text) => text,
        _ => "",
    }
}

/// The first cell as a user of this server, and the text the results file shows for it: the
/// user id when the cell is good, the cell as given when it is not.
pub fn local_user_cell(cells: &[Cell], ctx: &Context) -> (Result<UserRef, String>, String) {
    let user = required(cells, 0, "user").and_then(|u| local_user(u, ctx, ADMIN_API_LOCAL));
    let shown = match &user {
        Ok(user) => user.as_str().to_string(),
        Err(_) => text(cells, 0).to_string(),
    };
    (user, shown)
}

/// A yes/no cell: true/false, yes/no, 1/0, in any case.
pub fn boolean(field: &str, text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!(
            "{field} `{}` is not a yes/no value (true/false, yes/no, 1/0)",
            crate::input::quote(text)
        )),
    }
}

/// A user cell that must name an account of this server (by id, localpart or email); `why`
/// says why a remote user will not do.
pub fn local_user(cell: &str, ctx: &Context, why: &str) -> Result<UserRef, String> {
    let user = ids::user(cell, &ctx.server_name)?;
    if let UserRef::Mxid(id) = &user
        && ids::server_of(id) != Some(&ctx.server_name)
    {
        return Err(format!(
            "user `{id}` is not on this server ({}): {why}",
            ctx.server_name
        ));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_must_be_local() {
        let ctx = Context::of("x.org");
        assert!(local_user("alice", &ctx, ADMIN_API_LOCAL).is_ok());
        let err = local_user("@bob:other.org", &ctx, ADMIN_API_LOCAL).unwrap_err();
        assert!(
            err.contains("@bob:other.org") && err.contains("local"),
            "{err}"
        );
    }

    #[test]
    fn yes_and_no() {
        assert_eq!(boolean("erase", " Yes "), Ok(true));
        assert_eq!(boolean("erase", "0"), Ok(false));
        assert!(boolean("erase", "maybe").unwrap_err().contains("`maybe`"));
        let long = boolean("erase", &"y".repeat(60_000)).unwrap_err();
        assert!(
            long.len() < 250,
            "a long cell is quoted short: {} bytes",
            long.len()
        );
    }
}
