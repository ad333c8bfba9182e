//! The results file: one CSV line per finished row, appended and flushed as rows finish, and
//! read back to resume a run.
//!
//! Columns: `row,key,status,http_status,errcode,cause,message,attempts,finished_at,duration_ms`,
//! then the job's normalised fields. `cause` (a [`Cause`] slug) came after the first files were
//! written: a file without it is still read, and appended to in its own columns. A later line for a key supersedes an earlier one; a last line
//! without its newline was cut short by a crash and is ignored. Every line is one physical
//! line, read on its own: a damaged line costs only itself ([`lines`]).
//!
//! The header does not tell jobs apart (invite, kick and join write the same columns); the
//! keys do, since each starts with its job's name. A file is taken as the results of the job
//! of its first readable line.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant, SystemTime};

pub mod cause;
pub mod failed_sheet;
pub mod failures;
pub mod file;
pub mod finals;
pub mod json;
mod key;
pub mod lines;
mod record;
pub mod summary;

pub use cause::Cause;
pub use key::Key;
pub use lines::{Lines, Unreadable};
pub use record::Record;

pub const FIXED_COLUMNS: [&str; 10] = [
    "row",
    "key",
    "status",
    "http_status",
    "errcode",
    "cause",
    "message",
    "attempts",
    "finished_at",
    "duration_ms",
];

/// How often the file is synced to disk (each line is already handed to the OS as it is written).
const SYNC_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Unchanged,
    Failed,
    Invalid,
    /// Not final: a change was about to be sent. A later line for the key says how it ended;
    /// a key whose latest line is `pending` (the run was killed) is settled on resume by
    /// reading the server's state.
    Pending,
}

impl Status {
    /// The final statuses: every row ends with one of these.
    pub const ALL: [Status; 4] = [
        Status::Ok,
        Status::Unchanged,
        Status::Failed,
        Status::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unchanged => "unchanged",
            Status::Failed => "failed",
            Status::Invalid => "invalid",
            Status::Pending => "pending",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .chain([Status::Pending])
            .find(|st| st.as_str() == s)
    }

    /// Done rows are skipped by `--resume`.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Ok | Status::Unchanged)
    }
}

/// One line of the results file.
#[derive(Debug, Clone)]
pub struct ResultLine {
    pub row: u64,
    pub key: String,
    pub status: Status,
    pub http_status: Option<u16>,
    pub errcode: String,
    /// Why it failed, when the job knows more than the errcode says.
    pub cause: Option<Cause>,
    pub message: String,
    pub attempts: u32,
    pub duration: Duration,
    pub fields: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Csv { path: PathBuf, source: csv::Error },
    #[error(
        "{path} is being written by another synbatch run: wait for it to end, or name another \
         results file with -o"
    )]
    Busy { path: PathBuf },
    #[error(
        "{path} holds the results of `{found}`, not of `{expected}`: name another results file \
         with -o"
    )]
    OtherJob {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "{path} holds results with other columns (its header is `{found}`, this job writes \
         `{expected}`); name another file with -o"
    )]
    OtherColumns {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{path} is not a synbatch results file: it has no `key` and `status` columns")]
    NotResults { path: PathBuf },
    #[error(
        "refusing {path}: {why}. Results and reports are written only to regular files, never \
         through a symbolic link; name another file"
    )]
    Refused { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError + '_ {
    move |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The line with the token taken out of every text cell, whatever put it there (a copy only
/// when there is something to take out).
fn redacted(line: &ResultLine) -> std::borrow::Cow<'_, ResultLine> {
    use crate::secret::redact;
    use std::borrow::Cow;
    let texts = [&line.key, &line.errcode, &line.message];
    let dirty = texts
        .into_iter()
        .chain(&line.fields)
        .any(|t| matches!(redact(t), Cow::Owned(_)));
    if !dirty {
        return Cow::Borrowed(line);
    }
    let clean = |s: &str| redact(s).into_owned();
    Cow::Owned(ResultLine {
        key: clean(&line.key),
        errcode: clean(&line.errcode),
        message: clean(&line.message),
        fields: line.fields.iter().map(|f| clean(f)).collect(),
        ..line.clone()
    })
}

pub fn header(fields: &[&str]) -> Vec<String> {
    FIXED_COLUMNS
        .iter()
        .chain(fields)
        .map(|s| s.to_string())
        .collect()
}

/// The header of files written before the `cause` column: still appended to as they are.
fn legacy_header(fields: &[&str]) -> Vec<String> {
    header(fields)
        .into_iter()
        .filter(|c| c != "cause")
        .collect()
}

/// Where a results file's own fields start: after `duration_ms`, the last fixed column (a file
/// from before the `cause` column has one fixed column fewer).
pub fn first_field(header: &csv::ByteRecord) -> usize {
    header
        .iter()
        .position(|h| h == b"duration_ms")
        .map_or(FIXED_COLUMNS.len(), |at| at + 1)
}

/// Appends result lines to the file, flushing each batch to the OS and syncing now and then.
pub struct ResultsWriter {
    path: PathBuf,
    csv: csv::Writer<BufWriter<File>>,
    last_sync: Instant,
    /// The file has a `cause` column (every file but those of earlier versions).
    with_cause: bool,
}

impl ResultsWriter {
    /// Opens `path` for appending, writing the header if the file is new. An existing file must
    /// have been written by the same job: the same header, and its first readable line's key
    /// of `job`. A last line cut short by a crash is cut off, so that the file holds only whole
    /// lines (that row runs again). Only a regular file is written, never through a symbolic
    /// link ([`file`]).
    pub fn open(path: &Path, job: &str, fields: &[&str]) -> Result<Self, ResultsError> {
        let expected = header(fields);
        let (mut file, _) = file::open_output(path, file::Output::Append)?;
        // Two runs appending to one file would interleave lines and repeat each other's rows.
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => ResultsError::Busy {
                path: path.to_path_buf(),
            },
            std::fs::TryLockError::Error(e) => io_err(path)(e),
        })?;
        let len = file.metadata().map_err(io_err(path))?.len();
        let mut with_cause = true;
        if len > 0 {
            file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
            let mut lines = Lines::new(BufReader::new(&mut file)).map_err(io_err(path))?;
            let found = lines.header().iter().map(String::from_utf8_lossy);
            let found = found.collect::<Vec<_>>().join(",");
            let first_job = first_job(&mut lines).map_err(io_err(path))?;
            drop(lines);
            match first_job {
                Some(found) if found != job => {
                    return Err(ResultsError::OtherJob {
                        path: path.to_path_buf(),
                        found,
                        expected: job.to_string(),
                    });
                }
                _ if found == legacy_header(fields).join(",") => with_cause = false,
                _ if found != expected.join(",") => {
                    return Err(ResultsError::OtherColumns {
                        path: path.to_path_buf(),
                        found,
                        expected: expected.join(","),
                    });
                }
                _ => {}
            }
            if ends_without_newline(&mut file).map_err(io_err(path))? {
                drop_torn_tail(&mut file, len).map_err(io_err(path))?;
            }
        }
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(BufWriter::with_capacity(64 * 1024, file));
        if len == 0 {
            csv.write_record(&expected)
                .map_err(|source| ResultsError::Csv {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        Ok(ResultsWriter {
            path: path.to_path_buf(),
            csv,
            last_sync: Instant::now(),
            with_cause,
        })
    }

    pub fn write(&mut self, line: &ResultLine) -> Result<(), ResultsError> {
        let line = &*redacted(line);
        let mut cells = cells(line);
        if !self.with_cause {
            cells.remove(CAUSE_AT);
        }
        self.csv
            .write_record(cells.iter().map(|c| c.as_ref()))
            .map_err(|source| ResultsError::Csv {
                path: self.path.clone(),
                source,
            })
    }

    /// Hands what was written to the OS (a killed process then loses nothing), and syncs to
    /// disk every few seconds (a crashed machine loses at most those seconds).
    pub fn flush(&mut self) -> Result<(), ResultsError> {
        self.csv.flush().map_err(io_err(&self.path))?;
        if self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), ResultsError> {
        self.csv.flush().map_err(io_err(&self.path))?;
        self.last_sync = Instant::now();
        self.csv
            .get_ref()
            .get_ref()
            .sync_data()
            .map_err(io_err(&self.path))
    }
}

/// The cells of a results line. One record, one physical line: that is what lets a torn tail
/// be found and cut off, and a damaged line be read past. Any cell may hold a line break (a
/// quoted display name, a bad cell in a key, a server's errcode).
/// Where `cause` is in [`FIXED_COLUMNS`].
const CAUSE_AT: usize = 5;

fn cells(line: &ResultLine) -> Vec<Cow<'_, str>> {
    let owned = |s: String| Cow::Owned(s);
    let finished = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    [
        owned(line.row.to_string()),
        one_line(&line.key),
        Cow::Borrowed(line.status.as_str()),
        owned(line.http_status.map(|s| s.to_string()).unwrap_or_default()),
        one_line(&line.errcode),
        Cow::Borrowed(line.cause.map_or("", Cause::as_str)),
        one_line(&line.message),
        owned(line.attempts.to_string()),
        owned(finished),
        owned(line.duration.as_millis().to_string()),
    ]
    .into_iter()
    .chain(line.fields.iter().map(|f| one_line(f)))
    .collect()
}

fn one_line(text: &str) -> Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    }
}

/// The job of the first readable line's key, if there is one.
fn first_job<R: std::io::BufRead>(lines: &mut Lines<R>) -> std::io::Result<Option<String>> {
    let mut record = csv::ByteRecord::new();
    Ok(lines
        .next(&mut record)?
        .map(|_| Key::job_of(lines.key(&record)).to_string()))
}

/// A 128-bit digest of a row key: a million keys fit in a few tens of MB, and two different
/// keys share a digest with a chance too small to matter (2^-64 at a billion rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(u64, u64);

impl KeyId {
    pub fn of(key: &str) -> KeyId {
        // The file holds keys with line breaks made spaces; the same key must match.
        let key = one_line(key);
        let key = key.as_ref();
        let mut a = DefaultHasher::new();
        key.hash(&mut a);
        let mut b = DefaultHasher::new();
        (0x5eed_u16, key).hash(&mut b);
        KeyId(a.finish(), b.finish())
    }
}

/// The latest status of every key in an earlier results file.
#[derive(Debug, Default)]
pub struct Latest {
    status: HashMap<KeyId, Status>,
    /// The message (the before-state) of keys whose latest line is `pending`.
    pending: HashMap<KeyId, String>,
    unreadable: Unreadable,
}

impl Latest {
    pub fn get(&self, key: &str) -> Option<Status> {
        self.status.get(&KeyId::of(key)).copied()
    }

    /// The before-state an earlier run recorded for a key whose latest line is `pending`.
    pub fn pending(&self, key: &str) -> Option<&str> {
        self.pending.get(&KeyId::of(key)).map(String::as_str)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.status.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.status.is_empty()
    }

    /// A history of the given keys and statuses, for tests of what runs.
    #[cfg(test)]
    pub fn of<'a>(entries: impl IntoIterator<Item = (&'a str, Status)>) -> Latest {
        let status = entries
            .into_iter()
            .map(|(key, status)| (KeyId::of(key), status))
            .collect();
        Latest {
            status,
            ..Latest::default()
        }
    }

    /// The lines of the file that could not be read, and were skipped.
    #[cfg(test)]
    pub fn unreadable(&self) -> &Unreadable {
        &self.unreadable
    }

    /// Reads the results file of an earlier run of `job` for `--resume` or `--retry-failed`;
    /// a missing or empty file is an empty history. The file of another job, or one that is
    /// not a results file, is refused. Unreadable lines are skipped, and a warning on stderr
    /// says how many and where: what they recorded is unknown to this run.
    pub fn load(path: &Path, job: &str) -> Result<Latest, ResultsError> {
        let latest = Self::read_file(path, job)?;
        if !latest.unreadable.is_empty() {
            eprintln!(
                "warning: {}: {}; the rows they recorded are taken as never run",
                path.display(),
                latest.unreadable
            );
        }
        Ok(latest)
    }

    /// [`Latest::load`] without the warning.
    pub fn read_file(path: &Path, job: &str) -> Result<Latest, ResultsError> {
        let Some(file) = file::open_input(path)? else {
            return Ok(Latest::default());
        };
        let reader = BufReader::with_capacity(256 * 1024, file);
        let mut lines = Lines::new(reader).map_err(io_err(path))?;
        if !lines.is_results() {
            if lines.header().is_empty() {
                return Ok(Latest::default());
            }
            return Err(ResultsError::NotResults {
                path: path.to_path_buf(),
            });
        }
        let message_at = lines.header().iter().position(|h| h == b"message");
        let (mut status, mut pending) = (HashMap::new(), HashMap::new());
        let mut record = csv::ByteRecord::new();
        while let Some(entry) = lines.next(&mut record).map_err(io_err(path))? {
            let key = lines.key(&record);
            // The first readable line says whose file it is.
            if status.is_empty() && Key::job_of(key) != job {
                return Err(ResultsError::OtherJob {
                    path: path.to_path_buf(),
                    found: Key::job_of(key).to_string(),
                    expected: job.to_string(),
                });
            }
            let id = KeyId::of(key);
            status.insert(id, entry.status);
            if entry.status == Status::Pending {
                let message = message_at.and_then(|at| record.get(at)).unwrap_or_default();
                pending.insert(id, String::from_utf8_lossy(message).into_owned());
            } else {
                pending.remove(&id);
            }
        }
        Ok(Latest {
            status,
            pending,
            unreadable: lines.into_unreadable(),
        })
    }
}

/// Truncates the file after its last newline.
fn drop_torn_tail(file: &mut File, len: u64) -> std::io::Result<()> {
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(at) = part.iter().rposition(|b| *b == b'\n') {
            return file.set_len(start + at as u64 + 1);
        }
        end = start;
    }
    file.set_len(0)
}

fn ends_without_newline(file: &mut File) -> std::io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn line(row: u64, key: &str, status: Status) -> ResultLine {
        ResultLine {
            row,
            key: key.into(),
            status,
            http_status: Some(200),
            errcode: String::new(),
            cause: None,
            message: "a, \"quoted\"\nmessage".into(),
            attempts: 1,
            duration: Duration::from_millis(12),
            fields: vec!["@a:x".into(), "#r:x".into()],
        }
    }

    #[test]
    fn later_lines_supersede_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(1, "join a", Status::Failed)).unwrap();
        w.write(&line(2, "join b", Status::Ok)).unwrap();
        w.write(&line(1, "join a", Status::Ok)).unwrap();
        w.sync().unwrap();
        drop(w);
        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest.get("join a"), Some(Status::Ok));
        assert_eq!(latest.get("join b"), Some(Status::Ok));
        assert_eq!(latest.get("join c"), None);
    }

    #[test]
    fn torn_last_line_is_ignored_and_closed_off_on_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(1, "join a", Status::Ok)).unwrap();
        w.write(&line(2, "join b", Status::Ok)).unwrap();
        w.sync().unwrap();
        drop(w);
        // Cut the last line in the middle of its last field, as a crash would.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 4]).unwrap();
        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(latest.get("join a"), Some(Status::Ok));
        assert_eq!(latest.get("join b"), None, "torn line must not count");

        // The next run cuts the torn line off; its own lines parse cleanly.
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(3, "join c", Status::Failed)).unwrap();
        w.sync().unwrap();
        drop(w);
        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(latest.get("join b"), None);
        assert_eq!(latest.get("join c"), Some(Status::Failed));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "header, a, c: {text}");
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let first = ResultsWriter::open(&path, "join", &["user"]).unwrap();
        let err = ResultsWriter::open(&path, "join", &["user"]).err().unwrap();
        assert!(matches!(err, ResultsError::Busy { .. }), "{err}");
        drop(first);
        assert!(ResultsWriter::open(&path, "join", &["user"]).is_ok());
    }

    #[test]
    fn line_breaks_in_any_cell_stay_on_one_line_and_keys_still_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        let mut l = line(1, "join a\nb", Status::Ok);
        l.fields = vec!["a\nb".into(), "#r:x".into()];
        w.write(&l).unwrap();
        w.sync().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            Latest::load(&path, "join").unwrap().get("join a\nb"),
            Some(Status::Ok)
        );
    }

    #[test]
    fn file_with_other_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        drop(ResultsWriter::open(&path, "join", &["user", "room"]).unwrap());
        let err = ResultsWriter::open(&path, "delete-media", &["media"])
            .err()
            .unwrap();
        assert!(matches!(err, ResultsError::OtherColumns { .. }), "{err}");
        assert!(err.to_string().contains("-o"), "{err}");
    }

    /// Jobs whose results have the same columns: only the keys tell them apart.
    #[test]
    fn file_of_another_job_with_the_same_columns_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (first, second, fields) in [
            ("invite", "join", &["user", "room"][..]),
            ("join", "kick", &["user", "room"]),
            ("kick", "invite", &["user", "room"]),
            (
                "set-external-id",
                "remove-external-id",
                &["user", "provider", "external_id"],
            ),
            (
                "remove-external-id",
                "set-external-id",
                &["user", "provider", "external_id"],
            ),
        ] {
            let path = dir.path().join(format!("{first}.csv"));
            let mut w = ResultsWriter::open(&path, first, fields).unwrap();
            let mut l = line(1, &format!("{first} @a:x #r:x"), Status::Ok);
            l.fields = fields.iter().map(|f| f.to_string()).collect();
            w.write(&l).unwrap();
            w.sync().unwrap();
            drop(w);
            let before = std::fs::read(&path).unwrap();
            let err = ResultsWriter::open(&path, second, fields).err().unwrap();
            let text = err.to_string();
            assert!(matches!(err, ResultsError::OtherJob { .. }), "{text}");
            assert!(
                text.contains(&format!("`{first}`")) && text.contains(&format!("`{second}`")),
                "{text}"
            );
            assert!(text.contains("with -o"), "{text}");
            let err = Latest::load(&path, second).err().unwrap();
            assert!(matches!(err, ResultsError::OtherJob { .. }), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), before, "left as it was");
            // Its own job takes it.
            assert_eq!(Latest::load(&path, first).unwrap().len(), 1);
            drop(ResultsWriter::open(&path, first, fields).unwrap());
        }
    }

    #[test]
    fn the_job_is_that_of_the_first_readable_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let head = header(&["user", "room"]).join(",");
        // A header alone belongs to no job yet.
        std::fs::write(&path, format!("{head}\n")).unwrap();
        drop(ResultsWriter::open(&path, "kick", &["user", "room"]).unwrap());
        assert!(Latest::load(&path, "join").unwrap().is_empty());
        // An unreadable first line does not decide.
        std::fs::write(
            &path,
            format!("{head}\n1,\"join @a,ok\n2,invite @b,ok,,,,,1,t,0,@b,#r\n"),
        )
        .unwrap();
        let err = ResultsWriter::open(&path, "join", &["user", "room"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("`invite`"), "{err}");
        assert!(Latest::load(&path, "invite").is_ok());
    }

    /// Files written by the version before the job check: a header and lines, nothing else.
    #[test]
    fn files_of_the_previous_version_are_still_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(
            &path,
            "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,user,room\n\
             1,join @a:x #r:x,failed,403,M_FORBIDDEN,\"a, \"\"quoted\"\" message\",1,2025-01-01T00:00:00.000Z,12,@a:x,#r:x\n\
             2,join @b:x #r:x,ok,200,,,1,2025-01-01T00:00:00.000Z,9,@b:x,#r:x\n",
        )
        .unwrap();
        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(latest.get("join @a:x #r:x"), Some(Status::Failed));
        assert_eq!(latest.get("join @b:x #r:x"), Some(Status::Ok));
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(1, "join @a:x #r:x", Status::Ok)).unwrap();
        w.sync().unwrap();
        drop(w);
        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(latest.get("join @a:x #r:x"), Some(Status::Ok));
        assert!(latest.unreadable().is_empty());
    }

    /// The issue: one stray quote hid every later line from --resume and --retry-failed.
    #[test]
    fn a_stray_quote_hides_no_later_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        for i in 0..1000 {
            let status = if i % 20 == 0 {
                Status::Failed
            } else {
                Status::Ok
            };
            w.write(&line(i, &format!("join u{i}"), status)).unwrap();
        }
        w.sync().unwrap();
        drop(w);
        // An editor's slip: a quote opens the key of line 7 (row 5) and never closes.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let broken = lines[6].replacen(",join u5,", ",\"join u5,", 1);
        lines[6] = &broken;
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();

        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(latest.len(), 999);
        assert_eq!(latest.get("join u5"), None, "the broken line itself");
        assert_eq!(latest.get("join u6"), Some(Status::Ok));
        assert_eq!(latest.get("join u980"), Some(Status::Failed));
        assert_eq!(latest.get("join u999"), Some(Status::Ok));
        assert_eq!(latest.unreadable().count, 1);
        assert_eq!(latest.unreadable().first, vec![7]);
        // Appending after it is fine, and the new lines are read.
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(5, "join u5", Status::Ok)).unwrap();
        w.sync().unwrap();
        drop(w);
        let latest = Latest::load(&path, "join").unwrap();
        assert_eq!(
            (latest.len(), latest.get("join u5")),
            (1000, Some(Status::Ok))
        );
    }

    #[test]
    fn missing_or_empty_file_is_empty_history_other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Latest::load(&dir.path().join("none.csv"), "join")
                .unwrap()
                .is_empty()
        );
        let empty = dir.path().join("empty.csv");
        std::fs::write(&empty, "").unwrap();
        assert!(Latest::load(&empty, "join").unwrap().is_empty());
        let input = dir.path().join("input.csv");
        std::fs::write(&input, "user,room\n@a:x,#r\n").unwrap();
        let err = Latest::load(&input, "join").err().unwrap();
        assert!(matches!(err, ResultsError::NotResults { .. }), "{err}");
    }
}
