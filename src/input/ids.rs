//! User and room identifiers as people type them into spreadsheets, checked and normalised
//! before anything is sent.

/// Who a user cell names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    /// A full user id, `@localpart:server`.
    Mxid(String),
    /// An email address, to be resolved to the account it belongs to.
    Email(String),
}

impl UserRef {
    /// The normalised text: the user id, or the lowercased email address.
    pub fn as_str(&self) -> &str {
        match self {
            UserRef::Mxid(s) | UserRef::Email(s) => s,
        }
    }
}

/// Reads a user cell: a full user id, a bare localpart (qualified with `server_name`) or an
/// email address (contains `@` but does not start with it).
pub fn user(cell: &str, server_name: &str) -> Result<UserRef, String> {
    let cell = cell.trim();
    // Messages quote the first 100 characters of a long cell only.
    let shown = super::quote(cell);
    if cell.chars().any(char::is_whitespace) {
        return Err(format!("user `{shown}` contains white space"));
    }
    if let Some(rest) = cell.strip_prefix('@') {
        let Some((localpart, server)) = rest.split_once(':') else {
            return Err(format!(
                "user `{shown}` has no server part: a user id looks like @name:example.org"
            ));
        };
        if localpart.is_empty() || server.is_empty() {
            return Err(format!(
                "user `{shown}` is not a user id: it looks like @name:example.org"
            ));
        }
        check_server(server).map_err(|why| format!("user `{shown}`: {why}"))?;
        if cell.len() > 255 {
            return Err(format!("user `{shown}` is longer than 255 bytes"));
        }
        return Ok(UserRef::Mxid(cell.to_string()));
    }
    if let Some((local, domain)) = cell.split_once('@') {
        if local.is_empty() || domain.is_empty() || domain.contains('@') || !domain.contains('.') {
            return Err(format!("user `{shown}` is not a valid email address"));
        }
        // Synapse stores email threepids lowercased.
        return Ok(UserRef::Email(cell.to_lowercase()));
    }
    if cell.contains(':') {
        return Err(format!(
            "user `{shown}` is neither a user id (@name:server), a localpart nor an email address"
        ));
    }
    Ok(UserRef::Mxid(format!("@{cell}:{server_name}")))
}

/// The server part of a user id or room alias: everything after the first `:`.
pub fn server_of(id: &str) -> Option<&str> {
    id.split_once(':').map(|(_, server)| server)
}

/// Reads a room cell: a room id (`!opaque`, with or without `:server`: room version 12 ids have
/// none) or an alias (`#name:server`).
pub fn room(cell: &str) -> Result<String, String> {
    let cell = cell.trim();
    // Messages quote the first 100 characters of a long cell only.
    let shown = super::quote(cell);
    if cell.chars().any(char::is_whitespace) {
        return Err(format!("room `{shown}` contains white space"));
    }
    if let Some(rest) = cell.strip_prefix('!') {
        if rest.is_empty() || rest.starts_with(':') {
            return Err(format!("room id `{shown}` is empty"));
        }
        return Ok(cell.to_string());
    }
    if let Some(rest) = cell.strip_prefix('#') {
        match rest.split_once(':') {
            Some((name, server)) if !name.is_empty() && !server.is_empty() => {
                check_server(server).map_err(|why| format!("room alias `{shown}`: {why}"))?;
                return Ok(cell.to_string());
            }
            _ => {
                return Err(format!(
                    "room alias `{shown}` has no server part: an alias looks like #name:example.org"
                ));
            }
        }
    }
    Err(format!(
        "room `{shown}` is neither a room id (!…) nor an alias (#name:example.org)"
    ))
}

/// A server name as `--server-name` gives it: `example.org`, `host:8448`, `[::1]:8448`.
pub fn server_name(name: &str) -> Result<String, String> {
    check_server(name)?;
    Ok(name.to_string())
}

/// Whether a path segment would be dropped or climb a level in a URL (`.` or `..`): such an
/// identifier would send the request to another endpoint.
pub fn is_dot_segment(segment: &str) -> bool {
    matches!(segment, "." | "..")
}

fn check_server(server: &str) -> Result<(), String> {
    let ok = !server.is_empty()
        && !server.split(':').any(is_dot_segment)
        && server.chars().any(|c| c.is_ascii_alphanumeric())
        && server
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!("`{server}` is not a server name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_and_dot_segments() {
        assert_eq!(server_name("example.org"), Ok("example.org".into()));
        assert!(server_name("[::1]:8448").is_ok());
        for bad in ["..", ".", "", ":", "a/b", "..:8448"] {
            assert!(server_name(bad).is_err(), "{bad}");
        }
        assert!(is_dot_segment("..") && is_dot_segment(".") && !is_dot_segment("..."));
    }

    #[test]
    fn users() {
        let mx = |s: &str| Ok(UserRef::Mxid(s.into()));
        assert_eq!(user("@alice:example.org", "x"), mx("@alice:example.org"));
        assert_eq!(user(" alice ", "example.org"), mx("@alice:example.org"));
        assert_eq!(user("@bob:host:8448", "x"), mx("@bob:host:8448"));
        assert_eq!(
            user("Alice@Example.ORG", "x"),
            Ok(UserRef::Email("alice@example.org".into()))
        );
        for bad in [
            "@alice",
            "@:x",
            "@a:",
            "a b",
            "alice:x",
            "@a:exa mple",
            "@a:ex/ample",
            "a@b",
        ] {
            assert!(user(bad, "x").is_err(), "{bad} should be refused");
        }
        assert!(user("@a:x", "x").is_ok());
    }

    #[test]
    fn rooms() {
        assert_eq!(room("!ZKMmjw_abc"), Ok("!ZKMmjw_abc".into()));
        assert_eq!(room("!abc:example.org"), Ok("!abc:example.org".into()));
        assert_eq!(
            room(" #general:example.org"),
            Ok("#general:example.org".into())
        );
        for bad in ["general", "#general", "#:x", "!", "# a:x", "#a:b/c"] {
            let err = room(bad).unwrap_err();
            assert!(err.contains('`'), "{err}");
        }
    }

    #[test]
    fn server_part() {
        assert_eq!(server_of("@a:example.org:8448"), Some("example.org:8448"));
        assert_eq!(server_of("!opaque"), None);
    }
}
