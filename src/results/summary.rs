//! `synbatch report RESULTS.csv [--failed OUT]`: what a results file says now, once later
//! lines have superseded earlier ones, and the failed rows as a new input for the same job.
//!
//! Two passes over the file, so memory holds a small entry per key rather than every line: the
//! first finds each key's latest line, the second counts those lines and copies the failed ones.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::path::Path;

use super::failures::{Failures, Kind};
use super::file::{self, Output};
use super::json::{self, JsonSummary};
use super::{Cause, KeyId, Lines, ResultsError, Status, Unreadable, cause, first_field, io_err};

pub struct Summary {
    /// Readable lines.
    pub lines: u64,
    pub by_status: BTreeMap<&'static str, u64>,
    /// Failed and invalid rows by kind: errcode and cause (see [`cause`]).
    pub failures: Failures,
    /// The first and last `finished_at` of the lines counted (RFC 3339 sorts as text).
    pub first_finished: Option<String>,
    pub last_finished: Option<String>,
    /// The job that wrote the file (the first word of its keys).
    pub job: Option<String>,
    pub failed_written: u64,
    /// Lines that could not be read, and were skipped.
    pub unreadable: Unreadable,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("{path}: {source}")]
    Csv { path: String, source: csv::Error },
    #[error("--failed {path}: that is the results file being read; name a new file")]
    SameFile { path: String },
}

/// Reads `path`; with `failed`, writes the failed rows' fields to that file: a new file, or an
/// existing regular file emptied first (never through a symbolic link, see [`file`]).
pub fn summarise(path: &Path, failed: Option<&Path>) -> Result<Summary, ReportError> {
    if let Some(out) = failed
        && std::fs::canonicalize(out).ok() == std::fs::canonicalize(path).ok()
    {
        return Err(ReportError::SameFile {
            path: path.display().to_string(),
        });
    }
    let csv_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| ReportError::Csv { path, source }
    };
    let mut lines = open(path)?;
    let mut latest: HashMap<KeyId, u64> = HashMap::new();
    let mut count = 0;
    let mut record = csv::ByteRecord::new();
    while let Some(entry) = lines.next(&mut record).map_err(io_err(path))? {
        latest.insert(KeyId::of(lines.key(&record)), entry.number);
        count += 1;
    }
    let headers = lines.header().clone();
    let unreadable = lines.into_unreadable();
    let at = |name: &str| headers.iter().position(|h| h == name.as_bytes());
    let (errcode_at, message_at) = (at("errcode"), at("message"));
    let (cause_at, http_at, finished_at) = (at("cause"), at("http_status"), at("finished_at"));
    let fields_at = first_field(&headers);

    let mut out = match failed {
        Some(out) => {
            let (file, _) = file::open_output(out, Output::Replace)?;
            let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
            // The job's own fields, after the fixed columns: a valid input for the same job.
            writer
                .write_record(headers.iter().skip(fields_at))
                .map_err(csv_err(out))?;
            Some((writer, out))
        }
        None => None,
    };
    let mut summary = Summary {
        lines: count,
        by_status: BTreeMap::new(),
        failures: Failures::default(),
        first_finished: None,
        last_finished: None,
        job: None,
        failed_written: 0,
        unreadable,
    };
    let mut lines = open(path)?;
    while let Some(entry) = lines.next(&mut record).map_err(io_err(path))? {
        let key = lines.key(&record);
        if latest.get(&KeyId::of(key)) != Some(&entry.number) {
            continue; // superseded by a later line (or written after the first pass)
        }
        let text = |at: Option<usize>| {
            at.and_then(|i| record.get(i))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        let status = entry.status;
        if summary.job.is_none() {
            summary.job = Some(super::Key::job_of(key).to_string());
        }
        *summary.by_status.entry(status.as_str()).or_default() += 1;
        let finished = text(finished_at);
        if !finished.is_empty() {
            if summary
                .first_finished
                .as_ref()
                .is_none_or(|f| finished < *f)
            {
                summary.first_finished = Some(finished.clone());
            }
            if summary.last_finished.as_ref().is_none_or(|l| finished > *l) {
                summary.last_finished = Some(finished);
            }
        }
        if matches!(status, Status::Failed | Status::Invalid) {
            let message = text(message_at);
            // A file from before the `cause` column: what its messages tell.
            let cause = match cause_at {
                Some(_) => text(cause_at),
                None if status == Status::Failed => cause::from_message(&message)
                    .map(Cause::as_str)
                    .unwrap_or_default()
                    .to_string(),
                None => String::new(),
            };
            let kind = Kind {
                status,
                http_status: text(http_at).parse().ok(),
                errcode: text(errcode_at),
                cause,
            };
            summary.failures.add(kind, &message);
        }
        if status == Status::Failed
            && let Some((writer, out)) = out.as_mut()
        {
            writer
                .write_record(record.iter().skip(fields_at))
                .map_err(csv_err(out))?;
            summary.failed_written += 1;
        }
    }
    if let Some((mut writer, out)) = out {
        writer.flush().map_err(|e| csv_err(out)(e.into()))?;
    }
    Ok(summary)
}

/// The lines of a results file, refused if it is not one.
fn open(path: &Path) -> Result<Lines<BufReader<std::fs::File>>, ResultsError> {
    let file = file::open_input(path)?.ok_or_else(|| {
        io_err(path)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ))
    })?;
    let lines = Lines::new(BufReader::with_capacity(256 * 1024, file)).map_err(io_err(path))?;
    if !lines.is_results() {
        return Err(ResultsError::NotResults {
            path: path.to_path_buf(),
        });
    }
    Ok(lines)
}

/// The summary as `report --json` writes it: the shape of `--summary-json`, from the latest
/// line of every key. `exit_code` is the report's own (1 while any row is not done).
pub fn to_json(path: &Path, s: &Summary) -> JsonSummary {
    let mut j = JsonSummary::new(json::Source::Report, s.job.as_deref());
    j.started_at = s.first_finished.clone();
    j.finished_at = s.last_finished.clone();
    j.set_results(path);
    j.rows = s.by_status.values().sum();
    j.counts = json::Counts::of(&s.by_status);
    j.set_failures(&s.failures);
    j.exit_code = if s.all_done() { 0 } else { 1 };
    j
}

impl Summary {
    /// Whether every key is ok or unchanged (`report`'s exit 0).
    pub fn all_done(&self) -> bool {
        ["failed", "invalid", "pending"]
            .iter()
            .filter_map(|s| self.by_status.get(s))
            .sum::<u64>()
            == 0
    }
}

/// Prints the summary; `failed` names the file the failed rows went to.
pub fn print(
    path: &Path,
    s: &Summary,
    failed: Option<&Path>,
    mut out: impl Write,
) -> std::io::Result<()> {
    let keys: u64 = s.by_status.values().sum();
    writeln!(
        out,
        "{}: {} lines, {keys} rows (latest line per key)",
        path.display(),
        s.lines
    )?;
    if !s.unreadable.is_empty() {
        writeln!(out, "{}", s.unreadable)?;
    }
    for status in Status::ALL {
        let n = s.by_status.get(status.as_str()).copied().unwrap_or(0);
        writeln!(out, "  {:<10} {n:>8}", status.as_str())?;
    }
    // Not a final status: a run was stopped after sending these rows' changes, before their
    // answers were recorded. Shown only when there are some.
    let pending = Status::Pending.as_str();
    if let Some(n) = s.by_status.get(pending).filter(|n| **n > 0) {
        writeln!(out, "  {pending:<10} {n:>8}")?;
        let (rows, were) = if *n == 1 {
            ("row", "was")
        } else {
            ("rows", "were")
        };
        writeln!(
            out,
            "pending: {n} {rows} {were} being sent when a run was stopped, and whether they took \
             effect is not recorded; rerun the same command with --resume to settle them (it \
             reads their state from the server)"
        )?;
    }
    let groups = s.failures.sorted();
    if !groups.is_empty() {
        writeln!(out, "failed and invalid rows by cause:")?;
        for (kind, group) in groups {
            // The file's text may hold a server's control characters: escaped for a terminal.
            writeln!(
                out,
                "  {:<8} {:>8}  {}  e.g. {}",
                kind.status.as_str(),
                group.count,
                crate::secret::for_terminal(&kind.describe()),
                crate::secret::for_terminal(&group.example)
            )?;
        }
        if s.failures.others > 0 {
            writeln!(out, "  (and {} rows of other kinds)", s.failures.others)?;
        }
    }
    if let Some(failed) = failed {
        let job = s.job.as_deref().unwrap_or("<job>");
        writeln!(
            out,
            "wrote {} failed rows to {}; run them again with: synbatch {job} {} and the options \
             of the first run (or rerun the first command with --retry-failed)",
            s.failed_written,
            failed.display(),
            failed.display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Cause, ResultLine, ResultsWriter};
    use std::time::Duration;

    fn line(row: u64, user: &str, status: Status, errcode: &str) -> ResultLine {
        ResultLine {
            row,
            key: format!("join {user} #r:x"),
            status,
            http_status: None,
            errcode: errcode.into(),
            cause: None,
            message: format!("about {user}"),
            attempts: 1,
            duration: Duration::ZERO,
            fields: vec![user.into(), "#r:x".into()],
        }
    }

    #[test]
    fn latest_line_per_key_counts_and_failed_rows_become_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(1, "@a:x", Status::Failed, "M_NOT_FOUND"))
            .unwrap();
        w.write(&line(2, "@b:x", Status::Failed, "M_FORBIDDEN"))
            .unwrap();
        w.write(&line(3, "@c:x", Status::Invalid, "")).unwrap();
        w.write(&line(1, "@a:x", Status::Ok, "")).unwrap(); // a's retry worked
        w.sync().unwrap();
        drop(w);
        let out = dir.path().join("retry.csv");
        let s = summarise(&path, Some(&out)).unwrap();
        assert_eq!(s.lines, 4);
        assert_eq!(s.by_status.get("ok"), Some(&1));
        assert_eq!(s.by_status.get("failed"), Some(&1));
        assert_eq!(s.by_status.get("invalid"), Some(&1));
        let groups: Vec<_> = s
            .failures
            .sorted()
            .into_iter()
            .map(|(k, g)| (k.errcode.as_str(), g.count, g.example.as_str()))
            .collect();
        // M_NOT_FOUND was superseded by a later ok.
        assert_eq!(
            groups,
            [("M_FORBIDDEN", 1, "about @b:x"), ("", 1, "about @c:x")]
        );
        assert_eq!(s.job.as_deref(), Some("join"));
        assert_eq!(s.failed_written, 1);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "user,room\n@b:x,#r:x\n"
        );
        let mut text = Vec::new();
        print(&path, &s, Some(&out), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("synbatch join"), "{text}");
    }

    #[test]
    fn pending_rows_are_counted_apart_with_how_to_settle_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(1, "@a:x", Status::Pending, "")).unwrap();
        w.write(&line(1, "@a:x", Status::Ok, "")).unwrap(); // it ended
        w.write(&line(2, "@b:x", Status::Pending, "")).unwrap(); // killed after sending
        w.write(&line(3, "@c:x", Status::Failed, "M_FORBIDDEN"))
            .unwrap();
        w.sync().unwrap();
        drop(w);
        let out = dir.path().join("retry.csv");
        let s = summarise(&path, Some(&out)).unwrap();
        assert_eq!(s.by_status.get("pending"), Some(&1));
        assert_eq!(s.by_status.get("ok"), Some(&1));
        assert_eq!(s.failed_written, 1, "only failed rows go to --failed");
        let mut text = Vec::new();
        print(&path, &s, None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("3 rows"), "{text}");
        assert!(text.contains("  pending           1"), "{text}");
        assert!(text.contains("pending: 1 row was being sent"), "{text}");
        assert!(text.contains("--resume to settle them"), "{text}");

        // No pending row, no pending line.
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(2, "@b:x", Status::Unchanged, "")).unwrap();
        w.sync().unwrap();
        drop(w);
        let s = summarise(&path, None).unwrap();
        let mut text = Vec::new();
        print(&path, &s, None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains("pending"), "{text}");
    }

    /// The issue: "M_NOT_FOUND 4" hid two missing users, a missing room and an unknown email.
    #[test]
    fn failures_are_grouped_by_cause_in_text_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        let causes = [
            Cause::UserNotFound,
            Cause::UserNotFound,
            Cause::RoomNotFound,
            Cause::EmailNotFound,
        ];
        for (i, cause) in causes.into_iter().enumerate() {
            let mut l = line(i as u64, &format!("@u{i}:x"), Status::Failed, "M_NOT_FOUND");
            l.http_status = Some(404);
            l.cause = Some(cause);
            w.write(&l).unwrap();
        }
        w.sync().unwrap();
        drop(w);
        let s = summarise(&path, None).unwrap();
        let mut text = Vec::new();
        print(&path, &s, None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for expected in [
            "failed          2  user not found (M_NOT_FOUND, HTTP 404)  e.g. about @u0:x",
            "failed          1  room not found (M_NOT_FOUND, HTTP 404)",
            "failed          1  email not found (M_NOT_FOUND, HTTP 404)",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
        let j = serde_json::to_value(to_json(&path, &s)).unwrap();
        assert_eq!(j["source"], "report");
        assert_eq!(j["exit_code"], 1);
        assert_eq!(j["counts"]["failed"], 4);
        assert_eq!(j["failures"][0]["cause"], "user_not_found");
        assert_eq!(j["failures"][0]["count"], 2);
        assert_eq!(j["failures"].as_array().unwrap().len(), 3);
        assert!(j["started_at"].as_str().unwrap() <= j["finished_at"].as_str().unwrap());
    }

    /// A server's error text with control characters (an ESC sequence that would repaint the
    /// terminal) is printed escaped, whatever the results file holds.
    #[test]
    fn control_characters_of_a_results_file_reach_the_terminal_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        let mut l = line(1, "@u:x", Status::Failed, "M_\u{1b}[2J");
        l.message = "denied \u{1b}[31mred\u{7}".into();
        w.write(&l).unwrap();
        w.sync().unwrap();
        drop(w);
        let s = summarise(&path, None).unwrap();
        let mut text = Vec::new();
        print(&path, &s, None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("denied"), "{text}");
    }

    /// Files from before the `cause` column: read, grouped by what their messages say, and
    /// `--failed` takes their fields from the right column.
    #[test]
    fn files_without_a_cause_column_are_grouped_by_their_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(
            &path,
            "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,user,room\n\
             1,join @a:x #r:x,failed,404,M_NOT_FOUND,User not found,1,2025-01-01T00:00:00.000Z,12,@a:x,#r:x\n\
             2,join @b:x #s:x,failed,404,M_NOT_FOUND,room alias #s:x does not exist,1,2025-01-01T00:00:01.000Z,9,@b:x,#s:x\n",
        )
        .unwrap();
        let out = dir.path().join("retry.csv");
        let s = summarise(&path, Some(&out)).unwrap();
        let causes: Vec<_> = s
            .failures
            .sorted()
            .iter()
            .map(|(k, _)| k.cause.clone())
            .collect();
        assert_eq!(causes, ["room_not_found", "user_not_found"]);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "user,room\n@a:x,#r:x\n@b:x,#s:x\n"
        );
        // Appending keeps the file's own columns.
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        let mut l = line(1, "@a:x", Status::Failed, "M_NOT_FOUND");
        l.key = "join @a:x #r:x".into();
        l.cause = Some(Cause::UserNotFound);
        w.write(&l).unwrap();
        w.sync().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().all(|l| l.split(',').count() == 11), "{text}");
        assert_eq!(summarise(&path, None).unwrap().lines, 3);
    }

    /// The issue: a stray quote made report count 5 rows of 1,000.
    #[test]
    fn unreadable_lines_are_skipped_and_reported_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        for i in 0..1000 {
            let status = if i % 100 == 0 {
                Status::Failed
            } else {
                Status::Ok
            };
            w.write(&line(i, &format!("@u{i}:x"), status, "M_X"))
                .unwrap();
        }
        w.sync().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[5] = lines[5].replacen(",join ", ",\"join ", 1); // a stray quote: line 6
        lines[9] = "garbage".into(); // line 10
        lines[100] = lines[100].replacen(",ok,", ",done,", 1); // line 101
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let out = dir.path().join("retry.csv");
        let s = summarise(&path, Some(&out)).unwrap();
        assert_eq!(s.lines, 997);
        assert_eq!(s.by_status.values().sum::<u64>(), 997);
        assert_eq!(s.by_status.get("failed"), Some(&10));
        assert_eq!(s.failed_written, 10);
        assert_eq!(s.unreadable.first, vec![6, 10, 101]);
        let mut text = Vec::new();
        print(&path, &s, None, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("3 unreadable lines skipped (line numbers 6, 10, 101)"),
            "{text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn failed_out_is_a_new_or_replaced_regular_file_never_a_link() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let mut w = ResultsWriter::open(&path, "join", &["user", "room"]).unwrap();
        w.write(&line(1, "@a:x", Status::Failed, "M_X")).unwrap();
        w.sync().unwrap();
        drop(w);
        // An existing regular file is replaced.
        let out = dir.path().join("retry.csv");
        std::fs::write(&out, "an older, longer list of failed rows\n".repeat(10)).unwrap();
        summarise(&path, Some(&out)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "user,room\n@a:x,#r:x\n"
        );
        // A link is refused, and what it points at is left alone.
        let target = dir.path().join("precious.txt");
        std::fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = summarise(&path, Some(&link)).err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        // So is a device.
        let err = summarise(&path, Some(Path::new("/dev/null")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let null = std::fs::metadata("/dev/null").unwrap();
        assert!(null.file_type().is_char_device());
    }

    #[test]
    fn a_file_that_is_not_results_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input.csv");
        std::fs::write(&path, "user,room\n@a:x,#r:x\n").unwrap();
        assert!(matches!(
            summarise(&path, None),
            Err(ReportError::Results(ResultsError::NotResults { .. }))
        ));
    }
}
