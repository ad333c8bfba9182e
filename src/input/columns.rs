//! Which input column feeds which field of a job: headers match case-insensitively, ignoring
//! spaces, `_` and `-`, by the field's own name first, then by its aliases, unless
//! `--column FIELD=HEADER` says otherwise.

use super::InputError;

/// A field a job reads from each row.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    pub name: &'static str,
    /// Other headers that mean this field, most specific first (already normalised).
    pub aliases: &'static [&'static str],
}

pub const USER: FieldDef = FieldDef {
    name: "user",
    aliases: &[
        "userid",
        "mxid",
        "matrixid",
        "username",
        "localpart",
        "email",
    ],
};

pub const ROOM: FieldDef = FieldDef {
    name: "room",
    aliases: &["roomid", "roomalias", "alias"],
};

/// A media item: `mxc://server/media_id` or a bare media id.
pub const MEDIA: FieldDef = FieldDef {
    name: "media",
    aliases: &["mediaid", "mxc", "contenturi", "uri"],
};

pub const REASON: FieldDef = FieldDef {
    name: "reason",
    aliases: &[],
};

pub const DISPLAYNAME: FieldDef = FieldDef {
    name: "displayname",
    aliases: &["name", "fullname"],
};

pub const PASSWORD: FieldDef = FieldDef {
    name: "password",
    aliases: &[],
};

pub const EMAIL: FieldDef = FieldDef {
    name: "email",
    aliases: &["mail", "emailaddress"],
};

pub const ADMIN: FieldDef = FieldDef {
    name: "admin",
    aliases: &["isadmin"],
};

pub const USER_TYPE: FieldDef = FieldDef {
    name: "user_type",
    aliases: &["type"],
};

pub const PROVIDER: FieldDef = FieldDef {
    name: "provider",
    aliases: &["authprovider", "idp"],
};

pub const EXTERNAL_ID: FieldDef = FieldDef {
    name: "external_id",
    aliases: &["subject", "sub"],
};

pub const ERASE: FieldDef = FieldDef {
    name: "erase",
    aliases: &[],
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

/// Binds headers to a job's fields.
#[derive(Debug, Clone)]
pub struct Binder {
    fields: &'static [FieldDef],
    /// `--column FIELD=HEADER`, per field index, normalised.
    overrides: Vec<Option<String>>,
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
        Ok(Binder { fields, overrides })
    }

    pub fn fields(&self) -> &'static [FieldDef] {
        self.fields
    }

    /// For each field, the index of the header that feeds it. A header feeds one field at most:
    /// exact names and `--column` bind first, so in a job with its own `email` field, the
    /// `email` header is not taken as the user.
    pub fn bind<'h>(&self, headers: impl IntoIterator<Item = &'h str>) -> Vec<Option<usize>> {
        let headers: Vec<String> = headers.into_iter().map(normalise).collect();
        let mut taken = vec![false; headers.len()];
        let mut bound = vec![None; self.fields.len()];
        let take = |want: &str, taken: &mut Vec<bool>| {
            let at = headers
                .iter()
                .enumerate()
                .position(|(i, h)| !taken[i] && h == want)?;
            taken[at] = true;
            Some(at)
        };
        for (i, field) in self.fields.iter().enumerate() {
            let want = match &self.overrides[i] {
                Some(header) => header.clone(),
                None => normalise(field.name),
            };
            bound[i] = take(&want, &mut taken);
        }
        for (i, field) in self.fields.iter().enumerate() {
            if bound[i].is_none() && self.overrides[i].is_none() {
                bound[i] = field.aliases.iter().find_map(|a| take(a, &mut taken));
            }
        }
        bound
    }

    /// The headers a field would accept, for error messages.
    pub fn accepted(&self, field: usize) -> String {
        match &self.overrides[field] {
            Some(h) => h.clone(),
            None => std::iter::once(self.fields[field].name)
                .chain(self.fields[field].aliases.iter().copied())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOIN: &[FieldDef] = &[USER, ROOM];
    const WITH_EMAIL: &[FieldDef] = &[
        USER,
        FieldDef {
            name: "email",
            aliases: &[],
        },
    ];

    #[test]
    fn headers_match_loosely_and_by_alias() {
        let b = Binder::new(JOIN, &[]).unwrap();
        assert_eq!(b.bind(["Matrix ID", "Room_Alias"]), vec![Some(0), Some(1)]);
        assert_eq!(
            b.bind(["\u{feff}User-Name", "x", "ROOM"]),
            vec![Some(0), Some(2)]
        );
        assert_eq!(b.bind(["name", "other"]), vec![None, None]);
    }

    #[test]
    fn own_field_name_beats_alias() {
        let b = Binder::new(WITH_EMAIL, &[]).unwrap();
        // `email` is the job's own field; `username` is the user.
        assert_eq!(b.bind(["email", "username"]), vec![Some(1), Some(0)]);
        // Without another user column, `email` is still not taken as the user.
        assert_eq!(b.bind(["email"]), vec![None, Some(0)]);
    }

    #[test]
    fn column_option_overrides() {
        let b = Binder::new(JOIN, &["room=Team Channel".into()]).unwrap();
        assert_eq!(
            b.bind(["room", "team_channel", "mxid"]),
            vec![Some(2), Some(1)]
        );
        assert!(Binder::new(JOIN, &["colour=x".into()]).is_err());
        assert!(Binder::new(JOIN, &["room".into()]).is_err());
    }
}
