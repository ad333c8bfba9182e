//! The latest line of every key in a results file with its message and user: what
//! `--annotate` writes back beside each input row. Memory grows with the number of keys (a
//! digest, a status, the message and the user of each), not with the file's history.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use super::{Key, KeyId, Lines, ResultsError, Status, file, io_err};

/// How a key ended, as its latest line says.
#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    pub status: Status,
    pub message: String,
    /// The `user` column: the user id (or the email address the row gave).
    pub user: String,
}

/// Every key's latest line in the results file of `job` (none if there is no file).
pub fn read(path: &Path, job: &str) -> Result<HashMap<KeyId, Final>, ResultsError> {
    let mut finals = HashMap::new();
    let Some(file) = file::open_input(path)? else {
        return Ok(finals);
    };
    let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file)).map_err(io_err(path))?;
    if !lines.is_results() {
        if lines.header().is_empty() {
            return Ok(finals);
        }
        return Err(ResultsError::NotResults {
            path: path.to_path_buf(),
        });
    }
    let at = |name: &str| lines.header().iter().position(|h| h == name.as_bytes());
    let (message_at, user_at) = (at("message"), at("user"));
    let mut record = csv::ByteRecord::new();
    while let Some(entry) = lines.next(&mut record).map_err(io_err(path))? {
        let key = lines.key(&record);
        if finals.is_empty() && Key::job_of(key) != job {
            return Err(ResultsError::OtherJob {
                path: path.to_path_buf(),
                found: Key::job_of(key).to_string(),
                expected: job.to_string(),
            });
        }
        let cell = |at: Option<usize>| {
            at.and_then(|at| record.get(at))
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .unwrap_or_default()
        };
        let message = if entry.status == Status::Pending {
            // A pending line's message is the state before the change, not news for a person.
            "sent when a run was stopped; rerun with --resume to settle it".to_string()
        } else {
            cell(message_at)
        };
        finals.insert(
            KeyId::of(key),
            Final {
                status: entry.status,
                message,
                user: cell(user_at),
            },
        );
    }
    Ok(finals)
}
