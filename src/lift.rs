//! `--lift-ratelimit`: the token's own account runs without Synapse's rate limits for the run,
//! and gets its previous override back when the run ends, however it ends.
//!
//! Before it lifts, the previous value is recorded in a state file
//! (`$XDG_STATE_HOME/synbatch/`, else `~/.local/state/synbatch/`; one file per homeserver and
//! account, mode 0600). The file is removed once the value is restored. A run killed before
//! that (SIGKILL, a power cut) leaves the file behind: the next run against that homeserver
//! with that account, whatever its job, finds it, says so, and restores the value first.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::connect::startup;
use crate::exit::Exit;
use crate::homeserver::{Homeserver, HsError, RateOverride};

/// What the state file holds: enough to restore the account by itself.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    homeserver: String,
    user_id: String,
    /// The override before the lift; `None`: there was none (restoring is a DELETE).
    previous: Option<RateOverride>,
    /// The run that lifted it: a leftover is only a leftover once that run is gone.
    pid: u32,
}

/// A lift in force; [`Lift::restore`] puts the previous value back.
pub struct Lift {
    hs: Arc<Homeserver>,
    user_id: String,
    url: Url,
    file: PathBuf,
    previous: Option<RateOverride>,
}

/// Where state files go: `$XDG_STATE_HOME/synbatch`, or `~/.local/state/synbatch`.
pub fn state_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            Some(
                std::env::var_os("HOME")
                    .and_then(absolute)?
                    .join(".local/state"),
            )
        })?;
    Some(base.join("synbatch"))
}

/// The state file of one account on one homeserver: both names are kept readable, with any
/// character that could not be in a file name written as `%XX` (so two accounts never share
/// one).
fn state_file(dir: &Path, url: &Url, user_id: &str) -> PathBuf {
    let escape = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'@' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let server = url.as_str().trim_end_matches('/');
    dir.join(format!(
        "ratelimit-{}-{}.json",
        escape(server),
        escape(user_id)
    ))
}

fn shown(value: Option<RateOverride>) -> String {
    match value {
        None => "no override (the server's limits)".into(),
        Some(v) => format!(
            "messages_per_second {}, burst_count {}",
            v.messages_per_second, v.burst_count
        ),
    }
}

/// How to put the value back by hand, for a message.
fn by_hand(url: &Url, user_id: &str, previous: Option<RateOverride>) -> String {
    let endpoint = format!(
        "{}/_synapse/admin/v1/users/{}/override_ratelimit",
        url.as_str().trim_end_matches('/'),
        user_id.replace('#', "%23")
    );
    match previous {
        None => format!("curl -X DELETE -H \"Authorization: Bearer $TOKEN\" '{endpoint}'"),
        Some(v) => format!(
            "curl -X POST -H \"Authorization: Bearer $TOKEN\" -d '{{\"messages_per_second\": {}, \
             \"burst_count\": {}}}' '{endpoint}'",
            v.messages_per_second, v.burst_count
        ),
    }
}

/// Sets `previous` back: a POST of it, or a DELETE when there was none.
async fn put_back(
    hs: &Homeserver,
    user_id: &str,
    previous: Option<RateOverride>,
) -> Result<(), HsError> {
    match previous {
        Some(value) => startup(|| hs.set_ratelimit_override(user_id, value)).await,
        None => startup(|| hs.delete_ratelimit_override(user_id)).await,
    }
}

/// Whether the run that wrote a record is still running (then its lift is no leftover).
fn still_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("synbatch"))
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn read_record(file: &Path) -> Result<Option<Record>, String> {
    let text = match fs::read(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    if text.len() > 64 * 1024 {
        return Err(format!("{} is too long to be synbatch's", file.display()));
    }
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| format!("{} is not a state file synbatch wrote: {e}", file.display()))
}

/// Writes the record before anything is changed: owner-only, whole or not at all.
fn write_record(file: &Path, record: &Record) -> std::io::Result<()> {
    let dir = file.parent().expect("a state file is in a directory");
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".ratelimit-")
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    temp.write_all(&serde_json::to_vec_pretty(record).expect("a record serialises"))?;
    temp.as_file().sync_all()?;
    temp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// At the start of every run that connects: a lift an earlier run left behind is put back
/// before anything else happens.
pub async fn restore_leftover(hs: &Homeserver, url: &Url, user_id: &str) -> Result<(), Exit> {
    let Some(dir) = state_dir() else {
        return Ok(());
    };
    let file = state_file(&dir, url, user_id);
    let record = match read_record(&file) {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(()),
        Err(why) => {
            return Err(Exit::Aborted(format!(
                "{why}. It records a rate limit that synbatch lifted for {user_id}: check the \
                 account's override (GET {}/_synapse/admin/v1/users/{user_id}/override_ratelimit), \
                 put it right, then remove the file",
                url.as_str().trim_end_matches('/')
            )));
        }
    };
    if still_running(record.pid) {
        eprintln!(
            "note: synbatch run {} has lifted the rate limit of {user_id} and will put it back \
             when it ends ({})",
            record.pid,
            file.display()
        );
        return Ok(());
    }
    eprintln!(
        "note: an earlier synbatch run lifted the rate limit of {user_id} on {url} and did not \
         put it back (it was killed); restoring it to {} first (recorded in {})",
        shown(record.previous),
        file.display()
    );
    match put_back(hs, user_id, record.previous).await {
        Ok(()) => {
            remove(&file);
            eprintln!("note: the rate limit of {user_id} is restored");
            Ok(())
        }
        Err(e) => Err(Exit::Aborted(format!(
            "could not restore the rate limit of {user_id}: {e}. The record stays in {}; the \
             next run tries again, or put it back by hand: {}",
            file.display(),
            by_hand(url, user_id, record.previous)
        ))),
    }
}

fn remove(file: &Path) {
    if let Err(e) = fs::remove_file(file)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!(
            "warning: the rate limit is restored, but {} could not be removed ({e}); remove it \
             by hand",
            file.display()
        );
    }
}

impl Lift {
    /// Records the account's override, then lifts it. `None`: another synbatch run that is
    /// still going has it lifted already, and will put it back.
    pub async fn apply(
        hs: Arc<Homeserver>,
        url: &Url,
        user_id: &str,
    ) -> Result<Option<Lift>, Exit> {
        let dir = state_dir().ok_or_else(|| {
            Exit::usage(
                "--lift-ratelimit records the account's rate limit in a state file first, and \
                 finds no place for it: set XDG_STATE_HOME or HOME",
            )
        })?;
        let file = state_file(&dir, url, user_id);
        if let Ok(Some(record)) = read_record(&file)
            && still_running(record.pid)
        {
            return Ok(None);
        }
        let previous = startup(|| hs.ratelimit_override(user_id))
            .await
            .map_err(|e| {
                Exit::aborted(format!(
                    "--lift-ratelimit: cannot read the rate limit of {user_id}: {e}"
                ))
            })?;
        let record = Record {
            homeserver: url.as_str().trim_end_matches('/').to_string(),
            user_id: user_id.to_string(),
            previous,
            pid: std::process::id(),
        };
        write_record(&file, &record).map_err(|e| {
            Exit::usage(format!(
                "--lift-ratelimit: cannot write the state file {} ({e}); nothing was changed",
                file.display()
            ))
        })?;
        let lift = Lift {
            hs,
            user_id: user_id.to_string(),
            url: url.clone(),
            file,
            previous,
        };
        if let Err(e) = startup(|| {
            lift.hs
                .set_ratelimit_override(user_id, RateOverride::LIFTED)
        })
        .await
        {
            // The answer may have been lost after the change: put the old value back all the same.
            let why = format!("--lift-ratelimit: cannot lift the rate limit of {user_id}: {e}");
            return Err(match lift.restore().await {
                Ok(()) => Exit::aborted(why),
                Err(more) => Exit::aborted(format!("{why}\n{more}")),
            });
        }
        eprintln!(
            "rate limit of {user_id} lifted for this run (was: {}; recorded in {})",
            shown(previous),
            lift.file.display()
        );
        Ok(Some(lift))
    }

    /// Puts the previous value back and removes the state file; on failure, says how to do it
    /// by hand (the file stays, so the next run tries again).
    pub async fn restore(self) -> Result<(), String> {
        match put_back(&self.hs, &self.user_id, self.previous).await {
            Ok(()) => {
                remove(&self.file);
                eprintln!(
                    "rate limit of {} restored ({})",
                    self.user_id,
                    shown(self.previous)
                );
                Ok(())
            }
            Err(e) => Err(format!(
                "could not restore the rate limit of {}: {e}. The record stays in {}; the next \
                 synbatch run against this homeserver with this token restores it, or put it \
                 back by hand: {}",
                self.user_id,
                self.file.display(),
                by_hand(&self.url, &self.user_id, self.previous)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_per_homeserver_and_account() {
        let dir = Path::new("/state");
        let url = |u: &str| Url::parse(u).unwrap();
        let a = state_file(dir, &url("https://hs.example.org"), "@admin:example.org");
        assert_eq!(
            a,
            dir.join("ratelimit-https%3A%2F%2Fhs.example.org-@admin%3Aexample.org.json")
        );
        assert_eq!(
            a,
            state_file(dir, &url("https://hs.example.org/"), "@admin:example.org")
        );
        assert_ne!(
            a,
            state_file(
                dir,
                &url("https://hs.example.org:8448"),
                "@admin:example.org"
            )
        );
        assert_ne!(
            a,
            state_file(dir, &url("https://hs.example.org"), "@other:example.org")
        );
        let odd = state_file(dir, &url("http://127.0.0.1:8008"), "@a/../b:x");
        assert_eq!(odd.parent(), Some(dir), "no path separator gets through");
    }

    #[test]
    fn the_record_is_owner_only_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/ratelimit-x.json");
        let record = Record {
            homeserver: "http://127.0.0.1:8008".into(),
            user_id: "@a:x".into(),
            previous: Some(RateOverride {
                messages_per_second: 2,
                burst_count: 3,
            }),
            pid: 1,
        };
        write_record(&file, &record).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = read_record(&file).unwrap().unwrap();
        assert_eq!(back.previous, record.previous);
        assert_eq!(back.user_id, "@a:x");
        assert!(
            read_record(&dir.path().join("none.json"))
                .unwrap()
                .is_none()
        );
        fs::write(&file, "not json").unwrap();
        assert!(read_record(&file).is_err());
    }

    #[test]
    fn the_way_back_by_hand() {
        let url = Url::parse("https://hs.example.org/").unwrap();
        let delete = by_hand(&url, "@a:x", None);
        assert!(delete.starts_with("curl -X DELETE"), "{delete}");
        assert!(delete.contains("https://hs.example.org/_synapse/admin/v1/users/@a:x/"));
        let post = by_hand(
            &url,
            "@a:x",
            Some(RateOverride {
                messages_per_second: 5,
                burst_count: 7,
            }),
        );
        assert!(
            post.contains(r#""messages_per_second": 5, "burst_count": 7"#),
            "{post}"
        );
    }
}
