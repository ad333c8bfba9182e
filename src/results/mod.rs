//! The results file: one CSV line per finished row, appended and flushed as rows finish, and
//! read back to resume a run.
//!
//! Columns: `row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms`, then
//! the job's normalised fields. A later line for a key supersedes an earlier one; a last line
//! without its newline was cut short by a crash and is ignored.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant, SystemTime};

mod key;
mod record;
pub mod summary;

pub use key::Key;
pub use record::Record;

pub const FIXED_COLUMNS: [&str; 9] = [
    "row",
    "key",
    "status",
    "http_status",
    "errcode",
    "message",
    "attempts",
    "finished_at",
    "duration_ms",
];

/// How often the file is synced to disk (each line is already handed to the OS as it is written).
const SYNC_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
        "{path} holds results of another job (its header is `{found}`, this job writes `{expected}`); \
         name another file with -o"
    )]
    OtherJob {
        path: PathBuf,
        found: String,
        expected: String,
    },
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

/// Appends result lines to the file, flushing each batch to the OS and syncing now and then.
pub struct ResultsWriter {
    path: PathBuf,
    csv: csv::Writer<BufWriter<File>>,
    last_sync: Instant,
}

impl ResultsWriter {
    /// Opens `path` for appending, writing the header if the file is new. An existing file must
    /// have been written by the same job. A last line cut short by a crash is cut off, so that
    /// the file holds only whole lines (that row runs again).
    pub fn open(path: &Path, fields: &[&str]) -> Result<Self, ResultsError> {
        let expected = header(fields);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        // Two runs appending to one file would interleave lines and repeat each other's rows.
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => ResultsError::Busy {
                path: path.to_path_buf(),
            },
            std::fs::TryLockError::Error(e) => io_err(path)(e),
        })?;
        let len = file.metadata().map_err(io_err(path))?.len();
        if len > 0 {
            let found = read_header(&mut file).map_err(io_err(path))?;
            if found != expected.join(",") {
                return Err(ResultsError::OtherJob {
                    path: path.to_path_buf(),
                    found,
                    expected: expected.join(","),
                });
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
        })
    }

    pub fn write(&mut self, line: &ResultLine) -> Result<(), ResultsError> {
        let line = &*redacted(line);
        let row = line.row.to_string();
        let http = line.http_status.map(|s| s.to_string()).unwrap_or_default();
        let attempts = line.attempts.to_string();
        let finished = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let millis = line.duration.as_millis().to_string();
        // One record, one physical line: that is what lets a torn tail be found and cut off.
        // Any cell may hold a line break (a quoted display name, a bad cell in a key).
        let message = one_line(&line.message);
        let key = one_line(&line.key);
        let fixed = [
            row.as_str(),
            &key,
            line.status.as_str(),
            &http,
            &line.errcode,
            &message,
            &attempts,
            &finished,
            &millis,
        ];
        let record = fixed
            .into_iter()
            .map(std::borrow::Cow::Borrowed)
            .chain(line.fields.iter().map(|f| one_line(f)));
        let record: Vec<_> = record.collect();
        let record = record.iter().map(|c| c.as_ref());
        self.csv
            .write_record(record)
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

fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ").into()
    } else {
        text.into()
    }
}

fn read_header(file: &mut File) -> std::io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::BufReader::new(&mut *file));
    let mut record = csv::StringRecord::new();
    reader.read_record(&mut record)?;
    Ok(record.iter().collect::<Vec<_>>().join(","))
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

    /// Reads a results file; a missing file is an empty history.
    pub fn load(path: &Path) -> Result<Latest, ResultsError> {
        if !path.exists() {
            return Ok(Latest::default());
        }
        let (file, torn_tail) = open_lines(path)?;
        Self::read(file, torn_tail).map_err(|source| ResultsError::Csv {
            path: path.to_path_buf(),
            source,
        })
    }

    fn read(file: File, torn_tail: bool) -> Result<Latest, csv::Error> {
        let mut latest = Latest::default();
        let mut columns = None;
        each_line(file, torn_tail, |headers, _, record| {
            let (key_at, status_at, message_at) = *columns.get_or_insert_with(|| {
                let at = |name: &str| headers.iter().position(|h| h == name.as_bytes());
                (at("key"), at("status"), at("message"))
            });
            let (Some(key_at), Some(status_at)) = (key_at, status_at) else {
                return;
            };
            let status = std::str::from_utf8(&record[status_at])
                .ok()
                .and_then(Status::parse);
            if let (Some(status), Ok(key)) = (status, std::str::from_utf8(&record[key_at])) {
                let id = KeyId::of(key);
                latest.status.insert(id, status);
                if status == Status::Pending {
                    let message = message_at.and_then(|at| record.get(at)).unwrap_or_default();
                    latest
                        .pending
                        .insert(id, String::from_utf8_lossy(message).into_owned());
                } else {
                    latest.pending.remove(&id);
                }
            }
        })?;
        Ok(latest)
    }
}

/// Calls `each(headers, line_number, record)` for every whole line of a results file: lines
/// with the header's width, and not a torn last line (one the writer did not finish).
pub fn each_line(
    file: File,
    torn_tail: bool,
    mut each: impl FnMut(&csv::ByteRecord, u64, &csv::ByteRecord),
) -> Result<csv::ByteRecord, csv::Error> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(std::io::BufReader::with_capacity(256 * 1024, file));
    let headers = reader.byte_headers()?.clone();
    let mut record = csv::ByteRecord::new();
    let mut pending = csv::ByteRecord::new();
    let mut have_pending = false;
    let mut number = 0u64;
    // Each line is handed on once the next one has been read, so that a torn last line is
    // never handed on.
    while reader.read_byte_record(&mut record)? {
        if have_pending {
            each(&headers, number, &pending);
        }
        number += 1;
        // A torn line that a later run cut short has too few fields.
        have_pending = record.len() == headers.len();
        std::mem::swap(&mut pending, &mut record);
    }
    if have_pending && !torn_tail {
        each(&headers, number, &pending);
    }
    Ok(headers)
}

/// Opens a results file for [`each_line`]: the file, and whether its last line is torn.
pub fn open_lines(path: &Path) -> Result<(File, bool), ResultsError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let torn_tail = ends_without_newline(&mut file).map_err(io_err(path))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    Ok((file, torn_tail))
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
mod tests {
    use super::*;

    fn line(row: u64, key: &str, status: Status) -> ResultLine {
        ResultLine {
            row,
            key: key.into(),
            status,
            http_status: Some(200),
            errcode: String::new(),
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
        let mut w = ResultsWriter::open(&path, &["user", "room"]).unwrap();
        w.write(&line(1, "join a", Status::Failed)).unwrap();
        w.write(&line(2, "join b", Status::Ok)).unwrap();
        w.write(&line(1, "join a", Status::Ok)).unwrap();
        w.sync().unwrap();
        drop(w);
        let latest = Latest::load(&path).unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest.get("join a"), Some(Status::Ok));
        assert_eq!(latest.get("join b"), Some(Status::Ok));
        assert_eq!(latest.get("join c"), None);
    }

    #[test]
    fn torn_last_line_is_ignored_and_closed_off_on_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, &["user", "room"]).unwrap();
        w.write(&line(1, "join a", Status::Ok)).unwrap();
        w.write(&line(2, "join b", Status::Ok)).unwrap();
        w.sync().unwrap();
        drop(w);
        // Cut the last line in the middle of its last field, as a crash would.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 4]).unwrap();
        let latest = Latest::load(&path).unwrap();
        assert_eq!(latest.get("join a"), Some(Status::Ok));
        assert_eq!(latest.get("join b"), None, "torn line must not count");

        // The next run cuts the torn line off; its own lines parse cleanly.
        let mut w = ResultsWriter::open(&path, &["user", "room"]).unwrap();
        w.write(&line(3, "join c", Status::Failed)).unwrap();
        w.sync().unwrap();
        drop(w);
        let latest = Latest::load(&path).unwrap();
        assert_eq!(latest.get("join b"), None);
        assert_eq!(latest.get("join c"), Some(Status::Failed));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "header, a, c: {text}");
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let first = ResultsWriter::open(&path, &["user"]).unwrap();
        let err = ResultsWriter::open(&path, &["user"]).err().unwrap();
        assert!(matches!(err, ResultsError::Busy { .. }), "{err}");
        drop(first);
        assert!(ResultsWriter::open(&path, &["user"]).is_ok());
    }

    #[test]
    fn line_breaks_in_any_cell_stay_on_one_line_and_keys_still_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, &["user", "room"]).unwrap();
        let mut l = line(1, "join a\nb", Status::Ok);
        l.fields = vec!["a\nb".into(), "#r:x".into()];
        w.write(&l).unwrap();
        w.sync().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(
            Latest::load(&path).unwrap().get("join a\nb"),
            Some(Status::Ok)
        );
    }

    #[test]
    fn file_of_another_job_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        drop(ResultsWriter::open(&path, &["user", "room"]).unwrap());
        let err = ResultsWriter::open(&path, &["media"]).err().unwrap();
        assert!(err.to_string().contains("another job"), "{err}");
    }

    #[test]
    fn missing_file_is_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Latest::load(&dir.path().join("none.csv"))
                .unwrap()
                .is_empty()
        );
    }
}
