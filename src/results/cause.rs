//! Why a row failed, beyond its errcode: one 404 `M_NOT_FOUND` is a missing user, another a
//! missing room alias, a third an email address no account has. The job that reads the answer
//! knows which; it says so with a [`Cause`], written in the results file's `cause` column as a
//! stable slug, and `report` and `--summary-json` group failures by it.
//!
//! Results files written before the `cause` column existed are still read: their causes are
//! recognised from the messages synbatch wrote ([`from_message`]), a best effort.

/// A failure's cause, as the job that met it names it. The slugs are a contract: scripts read
/// them from the results file and the JSON summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The account named by the row does not exist.
    UserNotFound,
    /// The room (alias or id) named by the row does not exist on this server.
    RoomNotFound,
    /// No account has the email address of the row's user cell.
    EmailNotFound,
    /// The account exists, and the job was told not to touch existing accounts.
    UserExists,
    /// The SSO mapping (provider, external id) belongs to another account.
    ExternalIdInUse,
    /// The account exists but lacks the SSO mapping the row gives it.
    ExternalIdMissing,
    /// Someone else made or changed the account while the run was between its read and write.
    ChangedMeanwhile,
    /// A file synbatch writes besides the results (generated passwords) could not be written.
    LocalFile,
}

impl Cause {
    #[cfg(test)]
    pub const ALL: [Cause; 8] = [
        Cause::UserNotFound,
        Cause::RoomNotFound,
        Cause::EmailNotFound,
        Cause::UserExists,
        Cause::ExternalIdInUse,
        Cause::ExternalIdMissing,
        Cause::ChangedMeanwhile,
        Cause::LocalFile,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::UserNotFound => "user_not_found",
            Cause::RoomNotFound => "room_not_found",
            Cause::EmailNotFound => "email_not_found",
            Cause::UserExists => "user_exists",
            Cause::ExternalIdInUse => "external_id_in_use",
            Cause::ExternalIdMissing => "external_id_missing",
            Cause::ChangedMeanwhile => "changed_meanwhile",
            Cause::LocalFile => "local_file",
        }
    }

    #[cfg(test)]
    pub fn parse(slug: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.as_str() == slug)
    }
}

/// What a person reads for a cause slug: `user not found`. A slug this version does not know
/// (a newer synbatch wrote the file) reads as itself with spaces.
pub fn describe(slug: &str) -> String {
    slug.replace('_', " ")
}

/// The cause of a failure from its message: for a results file written before the `cause`
/// column (the messages synbatch wrote then, and Synapse's own "User not found"), and for
/// `--check`, whose checks say why in words. `None` when the message does not tell.
pub fn from_message(message: &str) -> Option<Cause> {
    const SIGNS: [(&str, Cause); 9] = [
        ("no account has the email address", Cause::EmailNotFound),
        ("no such user", Cause::UserNotFound),
        ("User not found", Cause::UserNotFound),
        ("no account @", Cause::UserNotFound),
        ("room alias", Cause::RoomNotFound),
        ("Room alias", Cause::RoomNotFound),
        ("is not known to this server", Cause::RoomNotFound),
        ("already belongs to", Cause::ExternalIdInUse),
        ("exists already (--on-existing fail)", Cause::UserExists),
    ];
    SIGNS
        .iter()
        .find(|(sign, _)| message.contains(sign))
        .map(|(_, cause)| *cause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_round_trip_and_read_as_words() {
        for cause in Cause::ALL {
            assert_eq!(Cause::parse(cause.as_str()), Some(cause));
        }
        assert_eq!(describe("user_not_found"), "user not found");
        assert_eq!(describe("some_new_cause"), "some new cause");
    }

    #[test]
    fn old_messages_tell_their_cause() {
        let cases = [
            (
                "no account has the email address a@b.c",
                Some(Cause::EmailNotFound),
            ),
            ("User not found", Some(Cause::UserNotFound)),
            ("no such user @a:x", Some(Cause::UserNotFound)),
            ("room alias #r:x does not exist", Some(Cause::RoomNotFound)),
            ("You don't have permission", None),
        ];
        for (message, cause) in cases {
            assert_eq!(from_message(message), cause, "{message}");
        }
    }
}
