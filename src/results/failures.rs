//! Failed and invalid rows grouped by what went wrong: status, HTTP status, errcode and cause
//! together, so that "M_NOT_FOUND 4" reads "user not found 2, room not found 1, email not
//! found 1". Counted as a run goes (`--summary-json`) and from a results file (`report`).

use std::collections::BTreeMap;

use super::{ResultLine, Status, cause};

/// Groups kept at most: errcodes come from the server, which could send a new one per row.
/// Later kinds are counted in one last group.
const MAX_GROUPS: usize = 100;

/// An example message is cut to this many characters.
const EXAMPLE_CHARS: usize = 200;

/// What tells one group from another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kind {
    pub status: Status,
    pub http_status: Option<u16>,
    pub errcode: String,
    /// The cause slug; empty when the job named none.
    pub cause: String,
}

impl Kind {
    /// `user not found (M_NOT_FOUND, HTTP 404)`, `M_FORBIDDEN (HTTP 403)`, `invalid row`.
    pub fn describe(&self) -> String {
        let mut detail = vec![];
        if !self.errcode.is_empty() {
            detail.push(self.errcode.clone());
        }
        if let Some(status) = self.http_status {
            detail.push(format!("HTTP {status}"));
        }
        let detail = detail.join(", ");
        match (self.cause.as_str(), detail.as_str()) {
            ("", "") if self.status == Status::Invalid => "invalid row".into(),
            // No answer to read (retries ran out on timeouts), or synbatch's own finding.
            ("", "") => "other: see the example".into(),
            ("", _) => detail,
            (slug, "") => cause::describe(slug),
            (slug, _) => format!("{} ({detail})", cause::describe(slug)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub count: u64,
    /// The first message seen of this kind.
    pub example: String,
}

#[derive(Debug, Default, Clone)]
pub struct Failures {
    groups: BTreeMap<Kind, Group>,
    /// Rows of kinds beyond [`MAX_GROUPS`].
    pub others: u64,
}

impl Failures {
    pub fn add(&mut self, kind: Kind, message: &str) {
        if let Some(group) = self.groups.get_mut(&kind) {
            group.count += 1;
        } else if self.groups.len() < MAX_GROUPS {
            let example = message.chars().take(EXAMPLE_CHARS).collect();
            self.groups.insert(kind, Group { count: 1, example });
        } else {
            self.others += 1;
        }
    }

    /// Counts a finished line if it failed or is invalid.
    pub fn add_line(&mut self, line: &ResultLine) {
        if matches!(line.status, Status::Failed | Status::Invalid) {
            let kind = Kind {
                status: line.status,
                http_status: line.http_status,
                errcode: line.errcode.clone(),
                cause: line.cause.map(|c| c.as_str()).unwrap_or_default().into(),
            };
            self.add(kind, &line.message);
        }
    }

    /// The groups, the largest first (then failed before invalid, then by errcode and cause).
    pub fn sorted(&self) -> Vec<(&Kind, &Group)> {
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: Status, code: Option<u16>, errcode: &str, cause: &str) -> Kind {
        Kind {
            status,
            http_status: code,
            errcode: errcode.into(),
            cause: cause.into(),
        }
    }

    #[test]
    fn one_errcode_splits_by_cause() {
        let mut f = Failures::default();
        let missing = |cause| kind(Status::Failed, Some(404), "M_NOT_FOUND", cause);
        f.add(missing("user_not_found"), "no such user @a:x");
        f.add(missing("user_not_found"), "no such user @b:x");
        f.add(missing("room_not_found"), "room alias #r:x does not exist");
        f.add(
            missing("email_not_found"),
            "no account has the email address a@b.c",
        );
        let groups = f.sorted();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].0.cause, "user_not_found");
        assert_eq!(groups[0].1.count, 2);
        assert_eq!(groups[0].1.example, "no such user @a:x");
        assert_eq!(
            groups[0].0.describe(),
            "user not found (M_NOT_FOUND, HTTP 404)"
        );
        assert_eq!(
            kind(Status::Failed, Some(403), "M_FORBIDDEN", "").describe(),
            "M_FORBIDDEN, HTTP 403"
        );
        assert_eq!(
            kind(Status::Invalid, None, "", "").describe(),
            "invalid row"
        );
    }

    #[test]
    fn groups_are_bounded() {
        let mut f = Failures::default();
        for i in 0..MAX_GROUPS + 5 {
            f.add(kind(Status::Failed, Some(400), &format!("M_X{i}"), ""), "x");
        }
        assert_eq!(f.sorted().len(), MAX_GROUPS);
        assert_eq!(f.others, 5);
    }
}
