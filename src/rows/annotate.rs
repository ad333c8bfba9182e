//! `--annotate OUT`: the input sheet written back, row for row in its own order, with every
//! original column and `status`, `message`, `resolved_user` and `sheet_row` added: what an
//! admin hands back to HR. It is made from the input read again and the results file's latest
//! line per key, so a run that was killed and resumed annotates every row with how it ended.
//!
//! A row that became several tasks (`--room` twice) shows the worst status of its tasks, and
//! a message that says which of them it is about.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::homeserver::Homeserver;

use crate::input::{Binder, Input, InputSpec};
use crate::job::{Context, Job};
use crate::results::finals::{self, Final};
use crate::results::{KeyId, Status};

/// The columns added after the sheet's own.
const ADDED: [&str; 4] = ["status", "message", "resolved_user", "sheet_row"];

/// The most characters an xlsx cell holds.
const XLSX_CELL: usize = 32_767;

/// Where the annotated sheet goes, and as what.
#[derive(Debug, Clone)]
pub struct Annotate {
    pub path: PathBuf,
    xlsx: bool,
}

impl Annotate {
    /// `--annotate OUT` checked before anything runs: a .csv or .xlsx path, not the input or
    /// the results file, for an input that is a sheet (CSV or workbook) in a file.
    pub fn new(out: &Path, input: &InputSpec, results: &Path) -> Result<Annotate, String> {
        let ext = out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let xlsx = match ext.as_deref() {
            Some("xlsx") => true,
            Some("csv") => false,
            _ => {
                return Err(format!(
                    "--annotate {}: name a .csv or .xlsx file (the extension picks the format)",
                    out.display()
                ));
            }
        };
        let Some(input_path) = &input.path else {
            return Err("--annotate needs the input in a file: stdin cannot be read twice".into());
        };
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        if same(out, input_path) || same(out, results) {
            return Err(format!(
                "--annotate {}: that is the input or the results file; name another file",
                out.display()
            ));
        }
        Ok(Annotate {
            path: out.to_path_buf(),
            xlsx,
        })
    }

    /// Writes the annotated sheet (through a temporary file beside it, renamed into place, so
    /// that an interrupted write leaves the previous one whole). Returns how many rows.
    pub fn write<J: Job>(
        &self,
        job: &J,
        ctx: &Context,
        spec: &InputSpec,
        binder: Binder,
        finals: &HashMap<KeyId, Final>,
        by_email: &HashMap<String, String>,
    ) -> Result<u64, String> {
        let input = Input::open(spec, binder, &[])
            .map_err(|e| e.to_string())?
            .keeping_raw();
        let Some(headers) = input.headers().map(<[String]>::to_vec) else {
            return Err(
                "--annotate writes a sheet back: it needs a CSV or workbook input, not JSON".into(),
            );
        };
        let mut header = headers.clone();
        for added in ADDED {
            // A sheet that has a `status` column of its own keeps it; ours is told apart.
            let name = if headers.iter().any(|h| h.trim().eq_ignore_ascii_case(added)) {
                format!("synbatch_{added}")
            } else {
                added.to_string()
            };
            header.push(name);
        }
        let tmp = self.path.with_file_name(format!(
            ".{}.tmp",
            self.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut out = Out::create(&tmp, self.xlsx)?;
        out.row(&header)?;
        let mut planned = vec![];
        let mut rows = 0u64;
        let mut failure = None;
        input
            .for_each_row(|row| {
                planned.clear();
                job.plan(ctx, &row, &mut planned);
                let mut keys: Vec<String> = planned.iter().map(|p| p.key.to_string()).collect();
                // An unreadable row's tasks share one key (its row number).
                keys.dedup();
                let (status, message, mut user) = summarise(&keys, finals);
                if let Some(found) = by_email.get(&user) {
                    user = found.clone();
                }
                let mut cells = row.raw;
                cells.resize(headers.len().max(cells.len()), String::new());
                cells.extend([status, message, user, row.line.to_string()]);
                rows += 1;
                match out.row(&cells) {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        if let Some(e) = failure {
            return Err(e);
        }
        out.finish(&tmp)?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        Ok(rows)
    }
}

/// Every key's latest line in the results file.
pub fn finals(results: &Path, job: &str) -> Result<HashMap<KeyId, Final>, String> {
    finals::read(results, job).map_err(|e| e.to_string())
}

/// The accounts that the email addresses in the results name, looked up on the server (16 at
/// a time, once per address): `resolved_user` of a row that named its user by email. An
/// address without an account (or a lookup that fails) resolves to nothing.
pub async fn resolve_emails(
    hs: &Arc<Homeserver>,
    finals: &HashMap<KeyId, Final>,
) -> HashMap<String, String> {
    let mut emails: Vec<&str> = finals
        .values()
        .map(|f| f.user.as_str())
        .filter(|u| u.contains('@') && !u.starts_with('@'))
        .collect();
    emails.sort_unstable();
    emails.dedup();
    let mut found = HashMap::new();
    for chunk in emails.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for email in chunk {
            let (hs, email) = (hs.clone(), email.to_string());
            set.spawn(async move {
                let user = hs.user_by_email(&email).await.ok();
                (email, user)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((email, Some(user))) = done {
                found.insert(email, user);
            }
        }
    }
    found
}

/// How bad a status is, for the worst of a row's tasks; `None` is a task never run.
fn rank(status: Option<Status>) -> u8 {
    match status {
        Some(Status::Unchanged) => 0,
        Some(Status::Ok) => 1,
        None => 2,
        Some(Status::Pending) => 3,
        Some(Status::Invalid) => 4,
        Some(Status::Failed) => 5,
    }
}

fn name(status: Option<Status>) -> &'static str {
    status.map_or("not run", Status::as_str)
}

/// A row's status, message and user from the latest lines of its keys.
fn summarise(keys: &[String], finals: &HashMap<KeyId, Final>) -> (String, String, String) {
    let found: Vec<(&String, Option<&Final>)> = keys
        .iter()
        .map(|k| (k, finals.get(&KeyId::of(k))))
        .collect();
    let status = found
        .iter()
        .map(|(_, f)| f.map(|f| f.status))
        .max_by_key(|s| rank(*s))
        .flatten();
    let worst_rank = rank(status);
    let user = found
        .iter()
        .filter_map(|(_, f)| *f)
        .map(|f| f.user.clone())
        .find(|u| !u.is_empty())
        .unwrap_or_default();
    let worst: Vec<&(&String, Option<&Final>)> = found
        .iter()
        .filter(|(_, f)| rank(f.map(|f| f.status)) == worst_rank)
        .collect();
    let mut messages: Vec<&str> = worst
        .iter()
        .map(|(_, f)| f.map_or("", |f| f.message.as_str()))
        .collect();
    messages.dedup();
    let message = if worst.len() == found.len() && messages.len() == 1 {
        // One task, or all of them ended alike: the message says it all.
        messages[0].to_string()
    } else {
        let which: Vec<String> = worst
            .iter()
            .map(
                |(k, f)| match f.map(|f| f.message.as_str()).filter(|m| !m.is_empty()) {
                    Some(m) => format!("{k}: {m}"),
                    None => k.to_string(),
                },
            )
            .collect();
        format!(
            "{} of {} {}: {}",
            worst.len(),
            found.len(),
            name(status),
            which.join("; ")
        )
    };
    (name(status).to_string(), message, user)
}

/// The annotated sheet being written.
enum Out {
    Csv(Box<csv::Writer<File>>),
    Xlsx {
        book: Box<rust_xlsxwriter::Workbook>,
        next: u32,
    },
}

impl Out {
    fn create(path: &Path, xlsx: bool) -> Result<Out, String> {
        let err = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
        if xlsx {
            let mut book = Box::new(rust_xlsxwriter::Workbook::new());
            // Rows go to a temporary file as they come, not into memory.
            book.add_worksheet_with_constant_memory()
                .map_err(|e| err(&e))?;
            return Ok(Out::Xlsx { book, next: 0 });
        }
        let file = File::create(path).map_err(|e| err(&e))?;
        Ok(Out::Csv(Box::new(csv::Writer::from_writer(file))))
    }

    fn row(&mut self, cells: &[String]) -> Result<(), String> {
        match self {
            Out::Csv(w) => w.write_record(cells).map_err(|e| e.to_string()),
            Out::Xlsx { book, next } => {
                let sheet = book.worksheet_from_index(0).map_err(|e| e.to_string())?;
                for (col, text) in cells.iter().enumerate() {
                    if text.is_empty() {
                        continue;
                    }
                    let text = match text.char_indices().nth(XLSX_CELL) {
                        Some((at, _)) => &text[..at],
                        None => text,
                    };
                    sheet
                        .write_string(*next, col as u16, text)
                        .map_err(|e| e.to_string())?;
                }
                *next += 1;
                Ok(())
            }
        }
    }

    fn finish(self, path: &Path) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", path.display());
        match self {
            Out::Csv(mut w) => {
                w.flush().map_err(|e| err(&e))?;
                let file = w.into_inner().map_err(|e| err(&e))?;
                file.sync_all().map_err(|e| err(&e))
            }
            Out::Xlsx { mut book, .. } => book.save(path).map_err(|e| err(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fin(status: Status, message: &str) -> Final {
        Final {
            status,
            message: message.into(),
            user: "@a:x".into(),
        }
    }

    #[test]
    fn a_row_of_several_keys_shows_the_worst_and_which() {
        let keys: Vec<String> = ["join @a:x #r1:x", "join @a:x #r2:x", "join @a:x #r3:x"]
            .map(String::from)
            .to_vec();
        let mut finals = HashMap::new();
        finals.insert(KeyId::of(&keys[0]), fin(Status::Ok, ""));
        finals.insert(
            KeyId::of(&keys[1]),
            fin(Status::Failed, "M_FORBIDDEN: banned"),
        );
        let (status, message, user) = summarise(&keys, &finals);
        assert_eq!(status, "failed");
        assert_eq!(
            message,
            "1 of 3 failed: join @a:x #r2:x: M_FORBIDDEN: banned"
        );
        assert_eq!(user, "@a:x");
        finals.insert(KeyId::of(&keys[1]), fin(Status::Unchanged, "already"));
        let (status, message, _) = summarise(&keys, &finals);
        assert_eq!(
            (status.as_str(), message.as_str()),
            ("not run", "1 of 3 not run: join @a:x #r3:x")
        );
        finals.insert(KeyId::of(&keys[2]), fin(Status::Ok, ""));
        assert_eq!(summarise(&keys, &finals).0, "ok", "ok beats unchanged");
        assert_eq!(
            summarise(&keys[1..2], &finals).1,
            "already",
            "one key: its message"
        );
    }
}
