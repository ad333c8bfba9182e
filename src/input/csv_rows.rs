//! CSV rows: a UTF-8 BOM, CRLF line ends, `,` `;` or tab (detected from the header line),
//! quoted fields, blank lines skipped.

use std::io::{BufRead, BufReader, Read};

use super::{Binder, Cell, InputError, Row, cell};

pub struct CsvRows {
    reader: csv::Reader<Lines<BufReader<Box<dyn Read + Send>>>>,
    /// For each field, the column feeding it.
    bound: Vec<Option<usize>>,
    binder: Binder,
    /// Known columns the job does not take.
    pub ignored: Vec<String>,
    pub headers: Vec<String>,
    /// Hand on every cell as given too (`--annotate`).
    pub keep_raw: bool,
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
            .from_reader(Lines::new(buffered));
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
            headers,
            keep_raw: false,
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
                line: record
                    .position()
                    .map_or(number + 1, |p| self.reader.get_ref().line_at(p.byte())),
                cells: Ok(cells),
                raw: if self.keep_raw {
                    record
                        .iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect()
                } else {
                    vec![]
                },
            };
            if !each(row) {
                return Ok(());
            }
        }
    }
}

/// The input under the CSV parser, counting line ends as they pass, so that a record's
/// starting byte gives the line a text editor shows it on: the csv crate's own line count
/// passes over blank lines, and a person looks for the row by the editor's (or sheet's) number.
struct Lines<R> {
    inner: R,
    /// Offsets of the line ends read but not yet passed by a record's start (at most the
    /// parser's read-ahead), each with whether a `\r` came just before it.
    ends: std::cell::RefCell<std::collections::VecDeque<(u64, bool)>>,
    /// Line ends before the first of `ends`.
    passed: std::cell::Cell<u64>,
    read: u64,
    last: u8,
}

impl<R> Lines<R> {
    fn new(inner: R) -> Self {
        Lines {
            inner,
            ends: Default::default(),
            passed: Default::default(),
            read: 0,
            last: 0,
        }
    }

    /// The 1-based line of a record that the parser says starts at `offset`; offsets must
    /// come in increasing order. The parser's start may be the `\n` of a CRLF, or blank lines
    /// before the record: those are passed too.
    fn line_at(&self, offset: u64) -> u64 {
        let mut ends = self.ends.borrow_mut();
        let pass = |ends: &mut std::collections::VecDeque<(u64, bool)>| {
            ends.pop_front();
            self.passed.set(self.passed.get() + 1);
        };
        while ends.front().is_some_and(|(end, _)| *end < offset) {
            pass(&mut ends);
        }
        let mut at = offset;
        loop {
            match ends.front() {
                Some((end, _)) if *end == at => at += 1,
                Some((end, true)) if *end == at + 1 => at += 2,
                _ => break,
            }
            pass(&mut ends);
        }
        self.passed.get() + 1
    }
}

impl<R: Read> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut ends = self.ends.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                ends.push_back((self.read + i as u64, self.last == b'\r'));
            }
            self.last = *b;
        }
        self.read += n as u64;
        Ok(n)
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
