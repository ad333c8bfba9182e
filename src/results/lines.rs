//! Reading a results file back, one physical line at a time.
//!
//! The writer puts every record on one physical line (line breaks in cells become spaces), so
//! each line is parsed as a CSV record of its own against the header's width. A line that does
//! not parse, has the wrong number of fields, an unknown status or an unreadable key costs
//! only itself: it is skipped and counted, and the lines after it are read as usual (one stray
//! quote must not swallow the rest of the file). A last line without its newline was cut short
//! by a crash: it is ignored, not counted. Blank lines are no records and are passed over.
//!
//! Memory stays bounded: the file is read through a buffer, one line at a time, and a line
//! longer than [`MAX_LINE`] is skipped (and counted) without being held.

use std::fmt;
use std::io::{self, BufRead};

use super::Status;

/// The longest line read. The writer's lines are far shorter (messages are cut to a few
/// hundred characters); a longer line is damage, skipped without being held in memory.
pub const MAX_LINE: usize = 1 << 20;

/// The most columns a header may have.
const MAX_COLUMNS: usize = 1024;

/// How many line numbers of unreadable lines are kept to be shown.
const SHOWN: usize = 10;

/// The lines of a results file that could not be read: how many, and the first few numbers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub count: u64,
    /// Line numbers (1-based, the header is line 1) of the first [`SHOWN`] of them.
    pub first: Vec<u64>,
}

impl Unreadable {
    fn add(&mut self, line: u64) {
        self.count += 1;
        if self.first.len() < SHOWN {
            self.first.push(line);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// `3 unreadable lines skipped (line numbers 4, 7, 9)`; with more than ten, the first ten and
/// `...`.
impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.count == 1 { "" } else { "s" };
        let numbers: Vec<String> = self.first.iter().map(u64::to_string).collect();
        let more = if self.count > self.first.len() as u64 {
            ", ..."
        } else {
            ""
        };
        write!(
            f,
            "{} unreadable line{s} skipped (line number{s} {}{more})",
            self.count,
            numbers.join(", ")
        )
    }
}

/// A readable data line: its line number and status (the record holds its cells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub number: u64,
    pub status: Status,
}

/// The lines of a results file, after its header.
pub struct Lines<R> {
    reader: R,
    header: csv::ByteRecord,
    /// Where the `key` and `status` columns are; `None` if the header lacks either.
    columns: Option<(usize, usize)>,
    /// The number of the last physical line read.
    number: u64,
    buf: Vec<u8>,
    max_line: usize,
    parser: Parser,
    unreadable: Unreadable,
}

impl<R: BufRead> Lines<R> {
    /// Reads the header line. An empty file has an empty header.
    pub fn new(reader: R) -> io::Result<Lines<R>> {
        Self::with_max_line(reader, MAX_LINE)
    }

    pub(super) fn with_max_line(reader: R, max_line: usize) -> io::Result<Lines<R>> {
        let mut lines = Lines {
            reader,
            header: csv::ByteRecord::new(),
            columns: None,
            number: 0,
            buf: Vec::new(),
            max_line,
            parser: Parser::default(),
            unreadable: Unreadable::default(),
        };
        // The header: a torn or overlong header is kept as read; it will not match anything.
        let mut header = csv::ByteRecord::new();
        if lines.next_physical()? == Physical::Line {
            let line = &lines.buf[..];
            let line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
            if !lines.parser.parse(line, MAX_COLUMNS, &mut header) {
                header.clear();
            }
        }
        let at = |name: &str| header.iter().position(|h| h == name.as_bytes());
        lines.columns = at("key").zip(at("status"));
        lines.header = header;
        Ok(lines)
    }

    pub fn header(&self) -> &csv::ByteRecord {
        &self.header
    }

    /// Whether the header names a `key` and a `status` column.
    pub fn is_results(&self) -> bool {
        self.columns.is_some()
    }

    pub fn into_unreadable(self) -> Unreadable {
        self.unreadable
    }

    /// The key of a record that [`Lines::next`] returned (checked to be UTF-8 there).
    pub fn key<'r>(&self, record: &'r csv::ByteRecord) -> &'r str {
        self.columns
            .and_then(|(key_at, _)| record.get(key_at))
            .and_then(|k| std::str::from_utf8(k).ok())
            .unwrap_or_default()
    }

    /// The next readable data line into `record`; `None` at the end of the file (a torn last
    /// line is left unread). Unreadable lines are counted and passed over.
    pub fn next(&mut self, record: &mut csv::ByteRecord) -> io::Result<Option<Entry>> {
        let Some((key_at, status_at)) = self.columns else {
            return Ok(None);
        };
        let width = self.header.len();
        loop {
            let number = match self.next_physical()? {
                Physical::End => return Ok(None),
                Physical::TooLong => {
                    self.unreadable.add(self.number);
                    continue;
                }
                Physical::Line => self.number,
            };
            let line = &self.buf[..];
            if line.is_empty() {
                continue;
            }
            let readable = self.parser.parse(line, width, record)
                && record.len() == width
                && std::str::from_utf8(&record[key_at]).is_ok_and(|k| !k.is_empty());
            let status = readable
                .then(|| std::str::from_utf8(&record[status_at]).ok())
                .flatten()
                .and_then(Status::parse);
            match status {
                Some(status) => return Ok(Some(Entry { number, status })),
                None => self.unreadable.add(number),
            }
        }
    }

    /// Reads the next whole physical line into `buf`, without its line end (`\n` or `\r\n`).
    fn next_physical(&mut self) -> io::Result<Physical> {
        self.buf.clear();
        let limit = self.max_line as u64 + 2; // room for the `\r\n` of a line of max_line
        let read = io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(Physical::End);
        }
        if self.buf.last() != Some(&b'\n') {
            if (read as u64) < limit {
                return Ok(Physical::End); // no newline at the end: a torn last line
            }
            // Too long: read past the rest of it, a buffer at a time.
            self.buf.clear();
            if !skip_line(&mut self.reader)? {
                return Ok(Physical::End); // an overlong torn last line
            }
            self.number += 1;
            return Ok(Physical::TooLong);
        }
        self.number += 1;
        self.buf.pop();
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if self.buf.len() > self.max_line {
            self.buf.clear();
            return Ok(Physical::TooLong);
        }
        Ok(Physical::Line)
    }
}

/// What [`Lines::next_physical`] found.
#[derive(Debug, PartialEq, Eq)]
enum Physical {
    /// A whole line, in `buf`.
    Line,
    /// A whole line longer than `max_line`, read past and not held.
    TooLong,
    /// The end of the file, or a last line without its newline (torn by a crash).
    End,
}

/// Consumes up to and including the next newline; false if the file ended first.
fn skip_line(reader: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(false);
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(true);
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// Parses a line as one CSV record, the way the `csv` crate that wrote it reads it. One
/// parser serves every line (a `csv::Reader` per line would build its state machine each time).
struct Parser {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            core: csv_core::Reader::new(),
            out: Vec::new(),
            ends: vec![0; 16],
        }
    }
}

impl Parser {
    /// `line` as exactly one record of at most `max_fields` fields, into `record`.
    fn parse(&mut self, line: &[u8], max_fields: usize, record: &mut csv::ByteRecord) -> bool {
        self.core.reset();
        let Some((fields, used)) = self.read(line, max_fields) else {
            return false;
        };
        record.clear();
        let mut start = 0;
        for &end in &self.ends[..fields] {
            record.push_field(&self.out[start..end]);
            start = end;
        }
        // A bare `\r` outside quotes ends a record: a line holding a second one is not one.
        let rest = &line[used..];
        rest.is_empty() || self.read(rest, max_fields).is_none()
    }

    /// The next record of `input` into `out` and `ends`: its number of fields and the bytes of
    /// `input` it took; `None` if there is none or it has more than `max_fields` fields.
    fn read(&mut self, mut input: &[u8], max_fields: usize) -> Option<(usize, usize)> {
        let total = input.len();
        // Unquoting only shortens: the output fits in the input's length.
        if self.out.len() < total.max(1) {
            self.out.resize(total.max(1), 0);
        }
        let (mut outlen, mut endlen) = (0, 0);
        loop {
            let was_empty = input.is_empty();
            let (result, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[endlen..]);
            input = &input[nin..];
            outlen += nout;
            endlen += nend;
            match result {
                csv_core::ReadRecordResult::Record => return Some((endlen, total - input.len())),
                csv_core::ReadRecordResult::End => return None,
                csv_core::ReadRecordResult::InputEmpty if was_empty => return None,
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > max_fields {
                        return None;
                    }
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "row,key,status,http_status,errcode,message,attempts,finished_at,duration_ms,user\n";

    fn read_all(text: &[u8], max_line: usize) -> (Vec<(u64, String, Status)>, Unreadable) {
        let mut lines = Lines::with_max_line(text, max_line).unwrap();
        assert!(lines.is_results());
        let mut record = csv::ByteRecord::new();
        let mut out = vec![];
        while let Some(e) = lines.next(&mut record).unwrap() {
            out.push((e.number, lines.key(&record).to_string(), e.status));
        }
        (out, lines.into_unreadable())
    }

    fn ok(key: &str) -> String {
        format!("1,{key},ok,200,,,1,2024-01-01T00:00:00.000Z,3,@a:x\n")
    }

    #[test]
    fn a_stray_quote_costs_only_its_own_line() {
        let text = format!(
            "{HEADER}{}1,\"join b,ok,200,,,1,t,3,@b:x\n{}{}",
            ok("join a"),
            ok("join c"),
            ok("\"join, \"\"d\"\"\"")
        );
        let (read, unreadable) = read_all(text.as_bytes(), MAX_LINE);
        let keys: Vec<_> = read.iter().map(|(n, k, _)| (*n, k.as_str())).collect();
        assert_eq!(
            keys,
            vec![(2, "join a"), (4, "join c"), (5, "join, \"d\"")],
            "{text}"
        );
        assert_eq!(unreadable.count, 1);
        assert_eq!(unreadable.first, vec![3]);
    }

    #[test]
    fn wrong_width_unknown_status_bad_key_bare_cr_are_unreadable() {
        let text = [
            HEADER.as_bytes(),
            b"1,join a,ok,200\n",                           // too few fields
            b"1,join a,ok,200,,,1,t,3,@a:x,extra\n",        // too many
            b"1,join a,done,200,,,1,t,3,@a:x\n",            // unknown status
            b"1,join \xff,ok,200,,,1,t,3,@a:x\n",           // key not UTF-8
            b"1,,ok,200,,,1,t,3,@a:x\n",                    // no key
            b"1,join a,ok,200,,\rx,1,t,3,@a:x\n",           // two records
            b"1,join c,ok,200,,,1,t,3,@a:x\r1,join d,ok\n", // a whole one, then more
            b"1,join a,pending,,,,0,t,0,@a:x\r\n",          // CRLF and pending: fine
            b"\n",                                          // blank: not counted
            b"1,join b,ok,200,,\xff\x00msg,1,t,3,@a:x\n",   // odd bytes in a message: fine
        ]
        .concat();
        let (read, unreadable) = read_all(&text, MAX_LINE);
        assert_eq!(
            read,
            vec![
                (9, "join a".to_string(), Status::Pending),
                (11, "join b".to_string(), Status::Ok)
            ]
        );
        assert_eq!(unreadable.first, vec![2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn torn_last_line_is_ignored_not_counted() {
        let text = format!("{HEADER}{}1,join b,o", ok("join a"));
        let (read, unreadable) = read_all(text.as_bytes(), MAX_LINE);
        assert_eq!(read.len(), 1);
        assert!(unreadable.is_empty());
    }

    #[test]
    fn overlong_lines_are_skipped_without_being_held() {
        let max = 150; // the header fits
        let long = format!("1,join {},ok,200,,,1,t,3,@a:x\n", "x".repeat(5000));
        let text = format!("{HEADER}{long}{}{long}{}", ok("join a"), ok("join b"));
        let (read, unreadable) = read_all(text.as_bytes(), max);
        assert_eq!(read.len(), 2);
        assert_eq!(read[1].0, 5);
        assert_eq!(unreadable.first, vec![2, 4]);
        // Not held: the line buffer never grew to the long line.
        let mut lines = Lines::with_max_line(text.as_bytes(), max).unwrap();
        while lines.next(&mut csv::ByteRecord::new()).unwrap().is_some() {}
        assert!(lines.buf.capacity() < 4 * max, "{}", lines.buf.capacity());
        // An overlong last line without its newline is torn, not unreadable.
        let (read, unreadable) = read_all(format!("{HEADER}{}", &long[..300]).as_bytes(), max);
        assert!(read.is_empty() && unreadable.is_empty());
        // A line of exactly the limit is read, with `\n` or `\r\n`; one byte more is not.
        let exact = ok(&format!("join {}", "c".repeat(120)));
        let exact = exact.trim_end();
        for end in ["\n", "\r\n"] {
            let text = format!("{HEADER}{exact}{end}");
            assert_eq!(read_all(text.as_bytes(), exact.len()).0.len(), 1, "{end:?}");
            let (read, unreadable) = read_all(text.as_bytes(), exact.len() - 1);
            assert_eq!((read.len(), unreadable.count), (0, 1), "{end:?}");
        }
    }

    #[test]
    fn header_without_key_or_status_is_not_results() {
        let lines = Lines::new(&b"user,room\n@a:x,#r\n"[..]).unwrap();
        assert!(!lines.is_results());
        let lines = Lines::new(&b""[..]).unwrap();
        assert!(!lines.is_results() && lines.header().is_empty());
        // A BOM from a spreadsheet's save is not part of the first column's name.
        let text = format!("\u{feff}{HEADER}");
        let lines = Lines::new(text.as_bytes()).unwrap();
        assert!(lines.is_results() && &lines.header()[0] == b"row");
    }

    #[test]
    fn unreadable_says_how_many_and_where() {
        let mut u = Unreadable::default();
        u.add(7);
        assert_eq!(u.to_string(), "1 unreadable line skipped (line number 7)");
        for n in 8..20 {
            u.add(n);
        }
        assert_eq!(
            u.to_string(),
            "13 unreadable lines skipped (line numbers 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, ...)"
        );
    }
}
