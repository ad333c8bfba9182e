//! CSV rows: a UTF-8 BOM, CRLF line ends, `,` `;` or tab (detected from the header line),
//! quoted fields, blank lines skipped.

use std::io::{BufRead, BufReader, Read};

use super::{Binder, Cell, InputError, Row, cell};

pub struct CsvRows {
    reader: csv::Reader<BufReader<Box<dyn Read + Send>>>,
    /// For each field, the column feeding it.
    bound: Vec<Option<usize>>,
    binder: Binder,
    /// Known columns the job does not take.
    pub ignored: Vec<String>,
}

impl CsvRows {
    pub fn open(
        name: &str,
        mut buffered: BufReader<Box<dyn Read + Send>>,
        delimiter: Option<u8>,
        binder: Binder,
        required: &[&str],
    ) -> Result<CsvRows, InputError> {
        let start = buffered.fill_buf().map_err(|source| InputError::Io {
            name: name.to_string(),
            source,
        })?;
        if start.starts_with(b"\xef\xbb\xbf") {
            buffered.consume(3);
        }
        let delimiter = match delimiter {
            Some(d) => d,
            None => detect_delimiter(buffered.fill_buf().unwrap_or_default()),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(buffered);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| InputError::Format {
                name: name.to_string(),
                message: format!("cannot read the header line: {e}"),
            })?
            .iter()
            .map(str::to_string)
            .collect();
        let bound = super::bind_header(name, &binder, &headers, required)?;
        let ignored = binder.ignored_known(&headers, &bound);
        Ok(CsvRows {
            reader,
            bound,
            binder,
            ignored,
        })
    }

    pub fn for_each_row(
        mut self,
        name: &str,
        mut each: impl FnMut(Row) -> bool,
    ) -> Result<(), InputError> {
        let mut record = csv::ByteRecord::new();
        let mut number = 0u64;
        loop {
            match self.reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => {
                    return Err(InputError::Format {
                        name: name.to_string(),
                        message: e.to_string(),
                    });
                }
            }
            // Spreadsheets export empty rows as `,,,`: not data.
            if record.iter().all(|f| f.trim_ascii().is_empty()) {
                continue;
            }
            number += 1;
            let mut cells: Vec<Cell> = self
                .bound
                .iter()
                .map(|at| match at.and_then(|i| record.get(i)) {
                    None => Cell::Empty,
                    Some(bytes) => match std::str::from_utf8(bytes) {
                        Ok(text) => cell(text),
                        Err(_) => Cell::Bad("is not valid UTF-8 text".into()),
                    },
                })
                .collect();
            self.binder.finish(&mut cells);
            let row = Row {
                number,
                line: record.position().map_or(number + 1, |p| p.line()),
                cells: Ok(cells),
            };
            if !each(row) {
                return Ok(());
            }
        }
    }
}

/// The most frequent of `,` `;` and tab in the header line, outside quotes; `,` on a tie.
fn detect_delimiter(start: &[u8]) -> u8 {
    let line = start.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for b in line {
        if *b == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(c) = counts.iter_mut().find(|(d, _)| d == b) {
            c.1 += 1;
        }
    }
    counts
        .iter()
        .fold((b',', 0), |best, c| if c.1 > best.1 { *c } else { best })
        .0
}

#[cfg(test)]
mod tests {
    use super::detect_delimiter;

    #[test]
    fn delimiter_from_header_line_only() {
        assert_eq!(detect_delimiter(b"user,room\n"), b',');
        assert_eq!(detect_delimiter(b"user;room\n@a:x,y;z\n"), b';');
        assert_eq!(detect_delimiter(b"user\troom"), b'\t');
        assert_eq!(detect_delimiter(b"\"a;b;c\",room"), b',');
        assert_eq!(detect_delimiter(b"user"), b',');
    }
}
