//! Which input column feeds which field of a job: headers match case-insensitively, ignoring
//! spaces, `_` and `-`, by the field's own name first, then by its aliases, then by its
//! fallbacks (headers that another field of the job may claim first), unless
//! `--column FIELD=HEADER` says otherwise. Two columns with the same header (`user`, `User`)
//! are refused: which one was meant cannot be guessed.

use super::{Cell, InputError};

/// A field a job reads from each row.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    /// Other headers that mean this field, most specific first (already normalised).
    pub aliases: &'static [&'static str],
    /// Headers that mean this field only when no other field of the job takes them: an email
    /// column names the user in `join`, but is the account's email in `create-users`.
    pub fallback: &'static [&'static str],
}

pub const USER: FieldDef = FieldDef {
    name: "user",
    // `id` is the header of synapse-admin's user export.
    aliases: &["userid", "mxid", "matrixid", "username", "localpart", "id"],
    fallback: EMAILS,
};

/// Headers of an email column (`E-mail` and `Email Address` normalised).
const EMAILS: &[&str] = &["email", "emailaddress", "mail"];

pub const ROOM: FieldDef = FieldDef {
    name: "room",
    aliases: &["roomid", "roomalias", "alias"],
    fallback: &[],
};

/// A media item: `mxc://server/media_id` or a bare media id.
pub const MEDIA: FieldDef = FieldDef {
    name: "media",
    aliases: &["mediaid", "mxc", "contenturi", "uri"],
    fallback: &[],
};

pub const REASON: FieldDef = FieldDef {
    name: "reason",
    aliases: &[],
    fallback: &[],
};

pub const DISPLAYNAME: FieldDef = FieldDef {
    name: "displayname",
    aliases: &["name", "fullname"],
    fallback: &[],
};

pub const PASSWORD: FieldDef = FieldDef {
    name: "password",
    aliases: &[],
    fallback: &[],
};

pub const EMAIL: FieldDef = FieldDef {
    name: "email",
    aliases: &["emailaddress", "mail"],
    fallback: &[],
};

pub const ADMIN: FieldDef = FieldDef {
    name: "admin",
    aliases: &["isadmin"],
    fallback: &[],
};

pub const USER_TYPE: FieldDef = FieldDef {
    name: "user_type",
    aliases: &["type"],
    fallback: &[],
};

pub const PROVIDER: FieldDef = FieldDef {
    name: "provider",
    aliases: &["authprovider", "idp"],
    fallback: &[],
};

pub const EXTERNAL_ID: FieldDef = FieldDef {
    name: "external_id",
    aliases: &["subject", "sub"],
    fallback: &[],
};

pub const ERASE: FieldDef = FieldDef {
    name: "erase",
    aliases: &[],
    fallback: &[],
};

/// `Display Name`, `display_name` and `display-name` all become `displayname`.
pub fn normalise(header: &str) -> String {
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Headers other jobs or synapse-admin's export use, which a job that does not take them
/// ignores with a word of warning (normalised).
const KNOWN: &[&str] = &[
    "user",
    "userid",
    "mxid",
    "matrixid",
    "username",
    "localpart",
    "id",
    "email",
    "emailaddress",
    "mail",
    "room",
    "roomid",
    "roomalias",
    "alias",
    "media",
    "mediaid",
    "mxc",
    "reason",
    "displayname",
    "name",
    "fullname",
    "password",
    "admin",
    "isadmin",
    "usertype",
    "provider",
    "authprovider",
    "idp",
    "externalid",
    "subject",
    "erase",
    "deactivated",
    "isguest",
    "erased",
    "locked",
    "shadowbanned",
    "creationts",
    "avatarurl",
    "appserviceid",
    "lastseents",
    "threepids",
    "externalids",
    "power",
];

/// Binds headers to a job's fields.
#[derive(Debug, Clone)]
pub struct Binder {
    fields: &'static [FieldDef],
    /// `--column FIELD=HEADER`, per field index, normalised.
    overrides: Vec<Option<String>>,
    /// `--localpart-from email`: the user field is made from the email column.
    localpart_from_email: bool,
}

impl Binder {
    /// `columns` are the `--column FIELD=HEADER` options.
    pub fn new(fields: &'static [FieldDef], columns: &[String]) -> Result<Binder, InputError> {
        let mut overrides = vec![None; fields.len()];
        for spec in columns {
            let (field, header) = spec.split_once('=').ok_or_else(|| {
                InputError::usage(format!("--column {spec}: expected FIELD=HEADER"))
            })?;
            let at = fields
                .iter()
                .position(|f| normalise(f.name) == normalise(field))
                .ok_or_else(|| {
                    let names: Vec<_> = fields.iter().map(|f| f.name).collect();
                    InputError::usage(format!(
                        "--column {spec}: this job has no field `{field}` (its fields: {})",
                        names.join(", ")
                    ))
                })?;
            overrides[at] = Some(normalise(header));
        }
        Ok(Binder {
            fields,
            overrides,
            localpart_from_email: false,
        })
    }

    /// `--localpart-from email`: the user is the part of the email address before `@`.
    pub fn localpart_from_email(mut self) -> Result<Binder, InputError> {
        if self.user().is_none() {
            return Err(InputError::usage(
                "--localpart-from email: this job has no user field",
            ));
        }
        self.localpart_from_email = true;
        Ok(self)
    }

    fn user(&self) -> Option<usize> {
        self.fields.iter().position(|f| f.name == USER.name)
    }

    pub fn fields(&self) -> &'static [FieldDef] {
        self.fields
    }

    /// For each field, the index of the header that feeds it. A header feeds one field at most:
    /// exact names and `--column` bind first, then aliases, then fallbacks, so in a job with its
    /// own `email` field, the `email` header is not taken as the user. Two headers that read
    /// the same (`user`, `User`) are an error naming both, when a field would take them.
    pub fn bind<'h>(
        &self,
        headers: impl IntoIterator<Item = &'h str>,
    ) -> Result<Vec<Option<usize>>, String> {
        let given: Vec<&str> = headers.into_iter().collect();
        let headers: Vec<String> = given.iter().map(|h| normalise(h)).collect();
        let mut taken = vec![false; headers.len()];
        let mut bound = vec![None; self.fields.len()];
        let take = |want: &str, taken: &mut Vec<bool>| -> Result<Option<usize>, String> {
            let mut matching = (0..headers.len()).filter(|i| !taken[*i] && headers[*i] == want);
            let Some(at) = matching.next() else {
                return Ok(None);
            };
            if let Some(other) = matching.next() {
                return Err(format!(
                    "columns {} (`{}`) and {} (`{}`) have the same header: which one is meant \
                     cannot be told; rename or remove one",
                    at + 1,
                    given[at].trim(),
                    other + 1,
                    given[other].trim()
                ));
            }
            taken[at] = true;
            Ok(Some(at))
        };
        for (i, field) in self.fields.iter().enumerate() {
            let want = match &self.overrides[i] {
                Some(header) => header.clone(),
                None => normalise(field.name),
            };
            bound[i] = take(&want, &mut taken)?;
        }
        for pass in [0, 1] {
            for (i, field) in self.fields.iter().enumerate() {
                if bound[i].is_some() || self.overrides[i].is_some() {
                    continue;
                }
                let names = if pass == 0 {
                    field.aliases
                } else {
                    field.fallback
                };
                for name in names {
                    if let Some(at) = take(name, &mut taken)? {
                        bound[i] = Some(at);
                        break;
                    }
                }
            }
        }
        if self.localpart_from_email
            && let Some(user) = self.user()
        {
            // The email column, whether the job's own email field took it or not.
            let email = self
                .fields
                .iter()
                .position(|f| f.name == EMAIL.name)
                .and_then(|i| bound[i]);
            let email = match email {
                Some(at) => Some(at),
                None => EMAILS
                    .iter()
                    .find_map(|e| headers.iter().position(|h| h == e)),
            };
            bound[user] = Some(email.ok_or_else(|| {
                "--localpart-from email: there is no email column (a header named email, \
                 e-mail, mail or email address)"
                    .to_string()
            })?);
        }
        Ok(bound)
    }

    /// Makes the user cell from the email address under `--localpart-from email`.
    pub fn finish(&self, cells: &mut [Cell]) {
        if !self.localpart_from_email {
            return;
        }
        let Some(user) = self.user() else { return };
        if let Cell::Text(email) = &cells[user] {
            cells[user] = match localpart_of_email(email) {
                Ok(localpart) => Cell::Text(localpart),
                Err(why) => Cell::Bad(why),
            };
        }
    }

    /// Headers this job does not take but another job (or synapse-admin's export) would: said
    /// once, so that a column someone meant to matter is not dropped without a word.
    pub fn ignored_known(&self, headers: &[String], bound: &[Option<usize>]) -> Vec<String> {
        headers
            .iter()
            .enumerate()
            .filter(|(i, h)| !bound.contains(&Some(*i)) && KNOWN.contains(&normalise(h).as_str()))
            .map(|(_, h)| h.trim().to_string())
            .collect()
    }

    /// The headers a field would accept, for error messages.
    pub fn accepted(&self, field: usize) -> String {
        match &self.overrides[field] {
            Some(h) => h.clone(),
            None => std::iter::once(self.fields[field].name)
                .chain(self.fields[field].aliases.iter().copied())
                .chain(self.fields[field].fallback.iter().copied())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The localpart an email address gives: the part before `@`, lowercased, when it keeps to the
/// characters a Matrix localpart may have.
pub fn localpart_of_email(email: &str) -> Result<String, String> {
    let shown = super::quote(email);
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(format!(
            "cannot come from email `{shown}` (--localpart-from email): it has no `@`"
        ));
    };
    let localpart = local.to_lowercase();
    let allowed = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
    if localpart.is_empty() || domain.is_empty() || !localpart.chars().all(allowed) {
        return Err(format!(
            "cannot come from email `{shown}` (--localpart-from email): `{}` is not a Matrix \
             localpart (only a-z, 0-9 and . _ = - / +)",
            super::quote(&localpart)
        ));
    }
    Ok(localpart)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOIN: &[FieldDef] = &[USER, ROOM];
    const CREATE: &[FieldDef] = &[USER, DISPLAYNAME, PASSWORD, EMAIL];

    fn bind(fields: &'static [FieldDef], headers: &[&str]) -> Result<Vec<Option<usize>>, String> {
        Binder::new(fields, &[])
            .unwrap()
            .bind(headers.iter().copied())
    }

    #[test]
    fn headers_match_loosely_and_by_alias() {
        assert_eq!(
            bind(JOIN, &["Matrix ID", "Room_Alias"]),
            Ok(vec![Some(0), Some(1)])
        );
        assert_eq!(
            bind(JOIN, &["\u{feff}User-Name", "x", "ROOM"]),
            Ok(vec![Some(0), Some(2)])
        );
        assert_eq!(bind(JOIN, &["name", "other"]), Ok(vec![None, None]));
        assert_eq!(
            bind(JOIN, &["id", "room"]),
            Ok(vec![Some(0), Some(1)]),
            "synapse-admin"
        );
        for email in ["Email Address", "E-mail", "Mail", "email"] {
            assert_eq!(
                bind(JOIN, &["room", email]),
                Ok(vec![Some(1), Some(0)]),
                "{email}"
            );
        }
    }

    #[test]
    fn own_field_name_beats_alias() {
        // `email` is the job's own field; `username` is the user.
        assert_eq!(
            bind(CREATE, &["email", "username"]),
            Ok(vec![Some(1), None, None, Some(0)])
        );
        // Without another user column, an email column is still not taken as the user.
        assert_eq!(
            bind(CREATE, &["E-mail", "Full Name"]),
            Ok(vec![None, Some(1), None, Some(0)])
        );
        assert_eq!(
            bind(CREATE, &["Employee ID", "Name", "Email Address"]),
            Ok(vec![None, Some(1), None, Some(2)])
        );
    }

    #[test]
    fn the_same_header_twice_is_refused_naming_both() {
        let err = bind(JOIN, &["user", "room", "User"]).unwrap_err();
        assert!(err.contains("columns 1 (`user`) and 3 (`User`)"), "{err}");
        let err = bind(JOIN, &["Matrix ID", "matrix_id", "room"]).unwrap_err();
        assert!(
            err.contains("`Matrix ID`") && err.contains("`matrix_id`"),
            "{err}"
        );
        // Two columns no field takes are nobody's business.
        assert!(bind(JOIN, &["user", "room", "note", "Note"]).is_ok());
    }

    #[test]
    fn column_option_overrides() {
        let b = Binder::new(JOIN, &["room=Team Channel".into()]).unwrap();
        assert_eq!(
            b.bind(["room", "team_channel", "mxid"]),
            Ok(vec![Some(2), Some(1)])
        );
        assert!(Binder::new(JOIN, &["colour=x".into()]).is_err());
        assert!(Binder::new(JOIN, &["room".into()]).is_err());
    }

    #[test]
    fn localpart_from_email_feeds_user_and_email() {
        let b = Binder::new(CREATE, &[])
            .unwrap()
            .localpart_from_email()
            .unwrap();
        let bound = b.bind(["Employee ID", "Name", "Email"]).unwrap();
        assert_eq!(bound, vec![Some(2), Some(1), None, Some(2)]);
        let mut cells = vec![
            Cell::Text("Jose.Muller@Example.org".into()),
            Cell::Empty,
            Cell::Empty,
            Cell::Text("Jose.Muller@Example.org".into()),
        ];
        b.finish(&mut cells);
        assert_eq!(cells[0], Cell::Text("jose.muller".into()));
        assert_eq!(cells[3], Cell::Text("Jose.Muller@Example.org".into()));
        let join = Binder::new(JOIN, &[])
            .unwrap()
            .localpart_from_email()
            .unwrap();
        assert_eq!(join.bind(["Mail", "room"]), Ok(vec![Some(0), Some(1)]));
        let err = join.bind(["user", "room"]).unwrap_err();
        assert!(err.contains("no email column"), "{err}");
    }

    #[test]
    fn emails_that_make_no_localpart() {
        assert_eq!(localpart_of_email("a.b+c@x.org"), Ok("a.b+c".into()));
        for bad in [
            "josé@x.org",
            "no-at-sign",
            "@x.org",
            "a b@x.org",
            "a\u{0}@x.org",
        ] {
            let err = localpart_of_email(bad).unwrap_err();
            assert!(err.contains("--localpart-from email"), "{bad}: {err}");
        }
    }

    #[test]
    fn known_columns_the_job_ignores_are_named() {
        let b = Binder::new(JOIN, &[]).unwrap();
        let headers: Vec<String> = ["id", "room", "deactivated", "is_guest", "notes"]
            .map(String::from)
            .to_vec();
        let bound = b.bind(headers.iter().map(String::as_str)).unwrap();
        assert_eq!(
            b.ignored_known(&headers, &bound),
            vec!["deactivated", "is_guest"]
        );
    }
}
