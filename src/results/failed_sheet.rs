//! `report RESULTS --failed OUT --input SHEET`: the failed rows as the sheet had them, every
//! column kept (a `password` column too, which the results file never holds), so that a rerun
//! from OUT is the same rows with the same values.
//!
//! A results line names its row by number (the data row of the input, blank lines not
//! counted): SHEET must be the input of that run, as it was. A results file that names rows
//! SHEET does not have is refused.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Write};
use std::path::Path;

use super::file::{self, Output};
use super::{KeyId, Lines, Status, io_err};
use crate::input::{Binder, Input, InputSpec};

/// What was written.
pub struct Written {
    pub rows: u64,
    /// The sheet has a `password` column: OUT was made readable by its owner only.
    pub passwords: bool,
}

pub fn write(results: &Path, input: &InputSpec, out: &Path) -> Result<Written, String> {
    let failed = failed_rows(results)?;
    let input_name = input.name();
    let sheet = Input::open(
        input,
        Binder::new(&[], &[]).map_err(|e| e.to_string())?,
        &[],
    )
    .map_err(|e| e.to_string())?
    .keeping_raw();
    let Some(headers) = sheet.headers().map(<[String]>::to_vec) else {
        return Err(format!(
            "--input {input_name}: a JSON input has no columns to keep; leave out --input to \
             write the results' own fields"
        ));
    };
    let passwords = headers
        .iter()
        .any(|h| h.trim().eq_ignore_ascii_case("password"));
    let (file, _) = file::open_output(out, Output::Replace).map_err(|e| e.to_string())?;
    if passwords {
        private(&file).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
    let csv_err = |e: csv::Error| format!("{}: {e}", out.display());
    writer.write_record(&headers).map_err(csv_err)?;
    let (mut rows, mut last, mut failure) = (0u64, 0u64, None);
    sheet
        .for_each_row(|row| {
            last = row.number;
            if failed.contains(&row.number) {
                let mut cells = row.raw;
                cells.resize(headers.len().max(cells.len()), String::new());
                if let Err(e) = writer.write_record(&cells) {
                    failure = Some(csv_err(e));
                    return false;
                }
                rows += 1;
            }
            true
        })
        .map_err(|e| e.to_string())?;
    if let Some(e) = failure {
        return Err(e);
    }
    writer
        .into_inner()
        .map_err(|e| format!("{}: {e}", out.display()))?
        .flush()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    if let Some(beyond) = failed.iter().copied().filter(|n| *n > last).max() {
        let _ = std::fs::remove_file(out);
        return Err(format!(
            "--input {input_name} has {last} rows, but {} names row {beyond}: give the sheet \
             that run read, as it was",
            results.display()
        ));
    }
    Ok(Written { rows, passwords })
}

/// The numbers of the rows whose key's latest line is `failed`.
fn failed_rows(results: &Path) -> Result<HashSet<u64>, String> {
    let file = file::open_input(results)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no such file", results.display()))?;
    let mut lines = Lines::new(BufReader::with_capacity(256 * 1024, file))
        .map_err(|e| io_err(results)(e).to_string())?;
    if !lines.is_results() {
        return Err(format!("{} is not a results file", results.display()));
    }
    let row_at = lines.header().iter().position(|h| h == b"row");
    let mut latest: HashMap<KeyId, (Status, u64)> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    while let Some(entry) = lines
        .next(&mut record)
        .map_err(|e| io_err(results)(e).to_string())?
    {
        let row = row_at
            .and_then(|at| record.get(at))
            .and_then(|r| std::str::from_utf8(r).ok())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        latest.insert(KeyId::of(lines.key(&record)), (entry.status, row));
    }
    Ok(latest
        .into_values()
        .filter(|(status, row)| *status == Status::Failed && *row > 0)
        .map(|(_, row)| row)
        .collect())
}

/// Readable and writable by its owner only: the file holds passwords.
fn private(file: &std::fs::File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}
