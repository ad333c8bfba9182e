//! A row's key: its stable identity across runs, and what `--resume` matches rows by.
//!
//! A key is the job's name and the normalised fields that make the row's intent, joined by
//! spaces (`join @alice:example.org #general:example.org`). A field that changes what the row
//! wants (`erase`, `drop=oidc-old`, `join=#room`) is part of it, so a rerun that asks for more
//! is new work. A row that names nothing is kept apart by its number (`join row:7`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// `job` and its parts; empty parts at the end drop out.
    pub fn new<'a>(job: &str, parts: impl IntoIterator<Item = &'a str>) -> Key {
        let mut key = job.to_string();
        for part in parts {
            key.push(' ');
            key.push_str(part);
        }
        key.truncate(key.trim_end().len());
        Key(key)
    }

    /// The key of a row whose identifying cell is empty or unreadable.
    pub fn unreadable(job: &str, row: u64) -> Key {
        Key(format!("{job} row:{row}"))
    }

    /// This key with one more part (an empty one is left out).
    pub fn and(mut self, part: &str) -> Key {
        if !part.is_empty() {
            self.0.push(' ');
            self.0.push_str(part);
        }
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The job a key recorded in a results file belongs to.
    pub fn job_of(key: &str) -> &str {
        key.split(' ').next().unwrap_or_default()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_joined_trailing_empties_dropped() {
        let key = Key::new("join", ["@a:x.org", "#r:x.org"]);
        assert_eq!(key.as_str(), "join @a:x.org #r:x.org");
        assert_eq!(Key::new("join", ["@a:x.org", ""]).as_str(), "join @a:x.org");
        // An empty part in the middle keeps its place: keys written by earlier versions match.
        assert_eq!(
            Key::new("set-external-id", ["@a", "", "1"]).as_str(),
            "set-external-id @a  1"
        );
        assert_eq!(Key::unreadable("kick", 7).as_str(), "kick row:7");
        assert_eq!(
            Key::new("deactivate", ["@a"]).and("erase").and("").as_str(),
            "deactivate @a erase"
        );
        assert_eq!(
            Key::job_of("remove-external-id @a saml"),
            "remove-external-id"
        );
    }
}
