//! `delete-media`: delete listed items of the local media repository.
//!
//! `DELETE /_synapse/admin/v1/media/<server_name>/<media_id>` -> 200
//! `{"deleted_media": [media_id], "total": 1}`: the file and its thumbnails are gone.
//!
//! Answers that matter for a rerun: an item that is already gone is 404 `M_NOT_FOUND`
//! "Unknown media", which is `unchanged`. Only local media can be deleted this way: an
//! `mxc://` URI of another server is `invalid` (Synapse keeps only a cache of remote media).

use clap::Args as ClapArgs;

use crate::cli::RowArgs;
use crate::executor::Attempt;
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError};
use crate::input::{FieldDef, MEDIA, Row, ids};
use crate::job::{Check, Context, Intent, Job, Outcome, Planned, required, text};
use crate::results::Key;

/// Delete media by id (admin API; column: media)
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Delete items of the local media repository through the admin API \
        (DELETE /_synapse/admin/v1/media/<server_name>/<media_id>).\n\n\
        Column: media, an mxc:// URI (mxc://example.org/AbCdEf) or a bare media id of this \
        server. Media of other servers are `invalid` (Synapse only caches them). An item \
        that is already gone (404 Unknown media) is `unchanged`. This cannot be undone: \
        synbatch asks first on a terminal, and needs --yes anywhere else.",
    after_help = "Examples:\n  \
        synbatch delete-media reported.csv --dry-run --check\n  \
        synbatch delete-media reported.csv --yes"
)]
pub struct Args {
    #[command(flatten)]
    pub rows: RowArgs,
}

pub async fn run(args: Args) -> Result<(), Exit> {
    crate::rows::run(DeleteMedia, &args.rows).await
}

const FIELDS: &[FieldDef] = &[MEDIA];

pub struct DeleteMedia;

pub struct MediaTask {
    server_name: String,
    media_id: String,
}

impl MediaTask {
    fn uri(&self) -> String {
        format!("mxc://{}/{}", self.server_name, self.media_id)
    }
}

/// Reads a media cell: `mxc://server/media_id`, or a bare media id of this server.
pub fn media(cell: &str, ctx: &Context) -> Result<(String, String), String> {
    // Messages quote a long cell's first 100 characters only.
    let shown = crate::input::quote(cell);
    let (server, id) = match cell.strip_prefix("mxc://") {
        Some(rest) => rest.split_once('/').ok_or_else(|| {
            format!("media `{shown}` has no media id: it looks like mxc://example.org/AbCdEf")
        })?,
        None if cell.contains(['/', ':']) => {
            return Err(format!(
                "media `{shown}` is neither an mxc:// URI (mxc://example.org/AbCdEf) nor a media \
                 id (AbCdEf)"
            ));
        }
        None => (ctx.server_name.as_str(), cell),
    };
    if id.is_empty()
        || id.contains('/')
        || id.chars().any(char::is_whitespace)
        || ids::is_dot_segment(id)
    {
        return Err(format!(
            "media `{shown}`: `{}` is not a media id",
            crate::input::quote(id)
        ));
    }
    if server != ctx.server_name {
        return Err(format!(
            "media `{shown}` is remote (it belongs to {server}, this server is {}): only local \
             media can be deleted",
            ctx.server_name
        ));
    }
    Ok((server.to_string(), id.to_string()))
}

impl Job for DeleteMedia {
    type Task = MediaTask;

    fn name(&self) -> &'static str {
        "delete-media"
    }

    fn input_fields(&self) -> &'static [FieldDef] {
        FIELDS
    }

    fn required_fields(&self) -> Vec<&'static str> {
        vec!["media"]
    }

    fn result_fields(&self) -> &'static [&'static str] {
        &["media"]
    }

    fn destructive(&self) -> bool {
        true
    }

    fn plan(&self, ctx: &Context, row: &Row, out: &mut Vec<Planned<MediaTask>>) {
        let planned = match &row.cells {
            Err(why) => Err((String::new(), why.clone())),
            Ok(cells) => required(cells, 0, "media")
                .and_then(|cell| media(cell, ctx))
                .map_err(|why| (text(cells, 0).to_string(), why)),
        };
        out.push(match planned {
            Ok((server_name, media_id)) => {
                let task = MediaTask {
                    server_name,
                    media_id,
                };
                Planned {
                    row: row.number,
                    key: Key::new("delete-media", [task.uri().as_str()]),
                    fields: vec![task.uri()],
                    task: Ok(task),
                }
            }
            Err((text, why)) => Planned {
                row: row.number,
                key: Key::new("delete-media", [text.as_str()]),
                fields: vec![text],
                task: Err(why),
            },
        });
    }

    async fn attempt(
        &self,
        hs: &Homeserver,
        task: &MediaTask,
        intent: &Intent<'_>,
    ) -> Attempt<Outcome> {
        let doubt = intent.in_doubt();
        intent.sending("").await?;
        match hs.delete_media(&task.server_name, &task.media_id).await {
            Ok(_) => Ok(Outcome::ok(200)),
            Err(e) if already_gone(&e) && doubt => Ok(intent.done_earlier(Some(404), "deleted")),
            Err(e) if already_gone(&e) => Ok(Outcome::unchanged(
                Some(404),
                "no such media: already deleted (404 Unknown media)",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Notes per row whether the item is there to delete (what Synapse knows of it) or gone.
    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &MediaTask,
    ) -> Result<Check, HsError> {
        let note = match hs.media_info(&task.server_name, &task.media_id).await {
            Ok(info) => format!(
                "would delete {} ({} bytes, uploaded by {})",
                task.uri(),
                info.media_length.map_or("?".into(), |n| n.to_string()),
                info.user_id.as_deref().unwrap_or("?")
            ),
            Err(e) if already_gone(&e) => format!("unchanged: {} is already gone", task.uri()),
            Err(e) => return Err(e),
        };
        Ok(Check::Runs(Some(note)))
    }

    fn describe(&self, task: &MediaTask) -> String {
        format!(
            "DELETE /_synapse/admin/v1/media/{}/{}",
            task.server_name, task.media_id
        )
    }
}

/// 404 `M_NOT_FOUND` "Unknown media"; a 404 without that errcode (an old Synapse without this
/// endpoint answers `M_UNRECOGNIZED`) is a real failure.
fn already_gone(e: &HsError) -> bool {
    e.status() == Some(404) && e.errcode() == "M_NOT_FOUND"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_cells() {
        let ctx = Context::of("x.org");
        let ok = |id: &str| ("x.org".to_string(), id.to_string());
        assert_eq!(media("mxc://x.org/AbC", &ctx), Ok(ok("AbC")));
        assert_eq!(media("AbC_d-1", &ctx), Ok(ok("AbC_d-1")));
        let why = media("mxc://other.org/AbC", &ctx).unwrap_err();
        assert!(why.contains("remote") && why.contains("other.org"), "{why}");
        for bad in [
            "mxc://x.org",
            "mxc://x.org/",
            "mxc://x.org/a/b",
            "http://x/y",
            "a b",
            "..",
            ".",
            "mxc://x.org/..",
        ] {
            assert!(media(bad, &ctx).is_err(), "{bad}");
        }
    }
}
