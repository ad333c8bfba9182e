//! `delete-media`: delete listed items of the local media repository.
//!
//! `DELETE /_synapse/admin/v1/media/<server_name>/<media_id>` -> 200
//! `{"deleted_media": [media_id], "total": 1}`: the file and its thumbnails are gone.
//!
//! Answers that matter for a rerun: an item that is already gone is 404 `M_NOT_FOUND`
//! "Unknown media", which is `unchanged`. Only local media can be deleted this way: an
//! `mxc://` URI of another server is `invalid` (Synapse keeps only a cache of remote media).

use super::{Context, Op, Outcome, Planned, classify, required};
use crate::executor::Attempt;
use crate::homeserver::{Homeserver, HsError};
use crate::input::{Cell, FieldDef, MEDIA, Row};

const FIELDS: &[FieldDef] = &[MEDIA];

pub struct DeleteMedia;

pub struct MediaTask {
    row: u64,
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
    let (server, id) = match cell.strip_prefix("mxc://") {
        Some(rest) => rest.split_once('/').ok_or_else(|| {
            format!("media `{cell}` has no media id: it looks like mxc://example.org/AbCdEf")
        })?,
        None if cell.contains(['/', ':']) => {
            return Err(format!(
                "media `{cell}` is neither an mxc:// URI (mxc://example.org/AbCdEf) nor a media \
                 id (AbCdEf)"
            ));
        }
        None => (ctx.server_name.as_str(), cell),
    };
    if id.is_empty() || id.contains('/') || id.chars().any(char::is_whitespace) {
        return Err(format!("media `{cell}`: `{id}` is not a media id"));
    }
    if server != ctx.server_name {
        return Err(format!(
            "media `{cell}` is remote (it belongs to {server}, this server is {}): only local \
             media can be deleted",
            ctx.server_name
        ));
    }
    Ok((server.to_string(), id.to_string()))
}

impl Op for DeleteMedia {
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
            Ok(cells) => {
                let text = match &cells[0] {
                    Cell::Text(t) => t.clone(),
                    _ => String::new(),
                };
                required(cells, 0, "media")
                    .and_then(|cell| media(cell, ctx))
                    .map_err(|why| (text, why))
            }
        };
        out.push(match planned {
            Ok((server_name, media_id)) => {
                let task = MediaTask {
                    row: row.number,
                    server_name,
                    media_id,
                };
                Planned {
                    row: row.number,
                    key: format!("delete-media {}", task.uri()),
                    fields: vec![task.uri()],
                    task: Ok(task),
                }
            }
            Err((text, why)) => Planned {
                row: row.number,
                key: format!("delete-media {text}").trim_end().to_string(),
                fields: vec![text],
                task: Err(why),
            },
        });
    }

    async fn attempt(&self, hs: &Homeserver, task: &MediaTask) -> Attempt<Outcome> {
        match hs.delete_media(&task.server_name, &task.media_id).await {
            Ok(_) => Attempt::Done(Outcome::ok(200)),
            Err(e) if already_gone(&e) => Attempt::Done(Outcome::unchanged(
                Some(404),
                "no such media: already deleted (404 Unknown media)",
            )),
            Err(e) => classify(e),
        }
    }

    /// Says per row whether the item is there to delete (what Synapse knows of it) or gone.
    async fn check(
        &self,
        hs: &Homeserver,
        _ctx: &Context,
        task: &MediaTask,
    ) -> Result<Option<String>, HsError> {
        match hs.media_info(&task.server_name, &task.media_id).await {
            Ok(info) => println!(
                "row {}: would delete {} ({} bytes, uploaded by {})",
                task.row,
                task.uri(),
                info.media_length.map_or("?".into(), |n| n.to_string()),
                info.user_id.as_deref().unwrap_or("?")
            ),
            Err(e) if already_gone(&e) => {
                println!(
                    "row {}: unchanged: {} is already gone",
                    task.row,
                    task.uri()
                )
            }
            Err(e) => return Err(e),
        }
        Ok(None)
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
        let ctx = Context {
            server_name: "x.org".into(),
            me: String::new(),
        };
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
        ] {
            assert!(media(bad, &ctx).is_err(), "{bad}");
        }
    }
}
