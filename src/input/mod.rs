//! Streaming readers: CSV, a JSON array of objects, JSON Lines, or a workbook's sheet (.xlsx,
//! .ods), from a file or stdin. Rows are handed on one at a time, so memory does not grow with
//! the input. Text inputs are checked to be UTF-8 (or decoded) before the first row is read.

mod columns;
mod csv_rows;
mod encoding;
pub mod ids;
mod json_rows;
mod sheet;

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub use columns::{
    ADMIN, Binder, DISPLAYNAME, EMAIL, ERASE, EXTERNAL_ID, FieldDef, MEDIA, PASSWORD, PROVIDER,
    REASON, ROOM, USER, USER_TYPE,
};

/// Input readers' buffer: large enough to hold a header line for delimiter detection.
const BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
    Jsonl,
    Xlsx,
    Ods,
}

/// Where rows come from and how to read them.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// `None` for stdin.
    pub path: Option<PathBuf>,
    pub format: Option<Format>,
    pub delimiter: Option<u8>,
    /// `--encoding LABEL`: what a text input is written in, when not UTF-8.
    pub encoding: Option<String>,
    /// `--sheet NAME`: which sheet of a workbook.
    pub sheet: Option<String>,
}

impl InputSpec {
    pub fn name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<stdin>".to_string(),
        }
    }
}

/// One data row, its cells in the order of the job's fields.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based number of the data row (header and blank lines not counted).
    pub number: u64,
    /// Where a person finds the row: its row number in a workbook's sheet, or the line it
    /// starts on in a CSV or JSON Lines file (the header is line 1).
    pub line: u64,
    /// The cells, or why the row could not be read at all (a JSON line that does not parse).
    pub cells: Result<Vec<Cell>, String>,
    /// Every cell of the row as given, in the sheet's column order: only when asked for
    /// ([`Input::keeping_raw`], for `--annotate`), else empty.
    pub raw: Vec<String>,
}

impl Row {
    /// A row of text cells (blank ones empty), for tests of how jobs plan rows.
    #[cfg(test)]
    pub fn of(number: u64, cells: &[&str]) -> Row {
        Row {
            number,
            line: number + 1,
            cells: Ok(cells.iter().map(|text| cell(text)).collect()),
            raw: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Empty,
    Text(String),
    /// A value of the wrong kind (a JSON array where text was expected), with why.
    Bad(String),
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: {message}")]
    Format { name: String, message: String },
    #[error("{0}")]
    Usage(String),
}

impl InputError {
    pub fn usage(message: impl Into<String>) -> Self {
        InputError::Usage(message.into())
    }
}

/// An opened input, ready to stream rows.
pub struct Input {
    name: String,
    reader: Reader,
    /// Known columns the job does not take (`deactivated` in `create-users`).
    ignored: Vec<String>,
}

enum Reader {
    Csv(Box<csv_rows::CsvRows>),
    Json(BufReader<Box<dyn Read + Send>>, Binder),
    Jsonl(BufReader<Box<dyn Read + Send>>, Binder),
    Sheet(sheet::SheetRows),
    /// Values that another task produces (the server's account list), each the first field of
    /// a row of `usize` fields.
    Values(tokio::sync::mpsc::Receiver<String>, usize),
}

impl Input {
    /// Opens the input and, for CSV, reads and binds the header, so that a file missing a
    /// required column is refused before anything is sent. `required` are the fields without
    /// which no row could run (the caller knows which ones other options supply).
    pub fn open(spec: &InputSpec, binder: Binder, required: &[&str]) -> Result<Input, InputError> {
        let name = spec.name();
        let io = |source| InputError::Io {
            name: name.clone(),
            source,
        };
        let file = match &spec.path {
            Some(path) => File::open(path).map_err(io)?,
            None => encoding::spool_stdin()?,
        };
        let format = spec
            .format
            .or_else(|| spec.path.as_deref().and_then(by_extension));
        let kind = match format {
            Some(Format::Xlsx) => Some(sheet::Kind::Xlsx),
            Some(Format::Ods) => Some(sheet::Kind::Ods),
            _ => None,
        };
        if let Some(kind) = kind {
            let rows = sheet::SheetRows::open(
                &name,
                file,
                kind,
                spec.sheet.as_deref(),
                &binder,
                required,
            )?;
            let ignored = binder.ignored_known(&rows.headers, &rows.bound);
            return Ok(Input {
                name,
                reader: Reader::Sheet(rows),
                ignored,
            });
        }
        let text = encoding::text(&name, file, spec.encoding.as_deref())?;
        let mut buffered = BufReader::with_capacity(BUFFER, text);
        let start = buffered.fill_buf().map_err(io)?;
        if start.starts_with(b"PK\x03\x04") {
            return Err(InputError::Format {
                name,
                message: "this is a workbook (a zip file), not text: name it .xlsx or .ods, \
                          or pass --format xlsx (or ods)"
                    .into(),
            });
        }
        let format = match format {
            Some(format) => format,
            None => sniff(start),
        };
        let mut ignored = vec![];
        let reader = match format {
            Format::Json => Reader::Json(buffered, binder),
            Format::Jsonl => Reader::Jsonl(buffered, binder),
            _ => {
                let rows = csv_rows::CsvRows::open(
                    &name,
                    buffered,
                    spec.delimiter
                        .or_else(|| tab_by_extension(spec.path.as_deref())),
                    binder,
                    required,
                )?;
                ignored = rows.ignored.clone();
                Reader::Csv(Box::new(rows))
            }
        };
        Ok(Input {
            name,
            reader,
            ignored,
        })
    }

    /// The header of a CSV file or a sheet, as written; `None` for JSON.
    pub fn headers(&self) -> Option<&[String]> {
        match &self.reader {
            Reader::Csv(rows) => Some(&rows.headers),
            Reader::Sheet(rows) => Some(&rows.headers),
            _ => None,
        }
    }

    /// Rows come with every cell as given ([`Row::raw`]): for writing the sheet back.
    pub fn keeping_raw(mut self) -> Input {
        match &mut self.reader {
            Reader::Csv(rows) => rows.keep_raw = true,
            Reader::Sheet(rows) => rows.keep_raw = true,
            _ => {}
        }
        self
    }

    /// Headers of columns that other jobs take but this one ignores, for one warning line.
    pub fn ignored_columns(&self) -> &[String] {
        &self.ignored
    }

    /// Rows whose first field comes from `values`, one a row, the other fields empty: an input
    /// that is not a file, such as the server's account list. It ends when the sender goes.
    pub fn from_values(
        name: &str,
        fields: usize,
        values: tokio::sync::mpsc::Receiver<String>,
    ) -> Input {
        Input {
            name: name.to_string(),
            reader: Reader::Values(values, fields),
            ignored: vec![],
        }
    }

    /// How many rows an input has, read once more from the start; `None` for stdin or a file
    /// that cannot be read (the run itself will say why).
    pub fn count_rows(spec: &InputSpec, binder: Binder) -> Option<u64> {
        spec.path.as_ref()?;
        let input = Input::open(spec, binder, &[]).ok()?;
        let mut rows = 0;
        input
            .for_each_row(|_| {
                rows += 1;
                true
            })
            .ok()?;
        Some(rows)
    }

    /// Calls `each` for every row until the input ends or `each` returns false. An error that
    /// stops the reading (a JSON array broken half-way) comes back after the rows before it.
    pub fn for_each_row(self, each: impl FnMut(Row) -> bool) -> Result<(), InputError> {
        match self.reader {
            Reader::Csv(rows) => rows.for_each_row(&self.name, each),
            Reader::Json(reader, binder) => json_rows::array(&self.name, reader, &binder, each),
            Reader::Jsonl(reader, binder) => json_rows::lines(&self.name, reader, &binder, each),
            Reader::Sheet(rows) => rows.for_each_row(&self.name, each),
            Reader::Values(mut values, fields) => {
                let mut each = each;
                let mut number = 0;
                while let Some(value) = values.blocking_recv() {
                    number += 1;
                    let mut cells = vec![Cell::Empty; fields];
                    cells[0] = cell(&value);
                    if !each(Row {
                        number,
                        line: number,
                        cells: Ok(cells),
                        raw: vec![],
                    }) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

fn by_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" => Some(Format::Csv),
        "json" => Some(Format::Json),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "xlsx" | "xlsm" => Some(Format::Xlsx),
        "ods" => Some(Format::Ods),
        _ => None,
    }
}

fn tab_by_extension(path: Option<&Path>) -> Option<u8> {
    let ext = path?.extension()?.to_str()?;
    ext.eq_ignore_ascii_case("tsv").then_some(b'\t')
}

/// For stdin or an unknown extension: `[` starts a JSON array, `{` a JSON line, anything else
/// is CSV.
fn sniff(start: &[u8]) -> Format {
    let start = start.strip_prefix(b"\xef\xbb\xbf").unwrap_or(start);
    match start.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        Some(b'{') => Format::Jsonl,
        _ => Format::Csv,
    }
}

/// For each field, the header column that feeds it; a required field with no column refuses
/// the input up front.
fn bind_header(
    name: &str,
    binder: &Binder,
    headers: &[String],
    required: &[&str],
) -> Result<Vec<Option<usize>>, InputError> {
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(InputError::Format {
            name: name.to_string(),
            message: "the file is empty: expected a header line naming the columns".into(),
        });
    }
    let bound = binder
        .bind(headers.iter().map(String::as_str))
        .map_err(|message| InputError::Format {
            name: name.to_string(),
            message,
        })?;
    for (i, field) in binder.fields().iter().enumerate() {
        if bound[i].is_none() && required.contains(&field.name) {
            return Err(InputError::Format {
                name: name.to_string(),
                message: format!(
                    "no column for `{}` (a header named one of: {}); the header has: {}. \
                     Name the column with --column {}=HEADER",
                    field.name,
                    binder.accepted(i),
                    headers.join(", "),
                    field.name
                ),
            });
        }
    }
    Ok(bound)
}

/// Longest cell taken, in bytes: far above any identifier, name or reason; a larger cell is
/// a mistake (a pasted file), and it is not carried on into messages and results.
const MAX_CELL: usize = 64 * 1024;

/// Characters of a cell that a message quotes, at most.
const QUOTED: usize = 100;

/// A cell's text: trimmed, and empty when blank.
fn cell(text: &str) -> Cell {
    let text = text.trim();
    if text.is_empty() {
        Cell::Empty
    } else if let Some((at, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        // NUL, ESC and the like: never meant, and never to be sent or echoed to a terminal.
        Cell::Bad(format!(
            "contains a control character (U+{:04X}) at character {}",
            u32::from(c),
            at + 1
        ))
    } else if text.len() > MAX_CELL {
        Cell::Bad(format!(
            "is {} bytes long, more than the {MAX_CELL} a cell may have (it starts `{}`)",
            text.len(),
            quote(text)
        ))
    } else {
        Cell::Text(text.to_string())
    }
}

/// A cell as a message quotes it: its first 100 characters, then how much was left out.
pub fn quote(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(QUOTED) {
        None => text.into(),
        Some((at, _)) => format!("{}… ({} more bytes)", &text[..at], text.len() - at).into(),
    }
}

#[cfg(test)]
mod prop_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const JOIN: &[FieldDef] = &[USER, ROOM];

    fn read(name: &str, content: &[u8], format: Option<Format>) -> Result<Vec<Row>, InputError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path).unwrap().write_all(content).unwrap();
        let spec = InputSpec {
            path: Some(path),
            format,
            delimiter: None,
            encoding: None,
            sheet: None,
        };
        let input = Input::open(&spec, Binder::new(JOIN, &[]).unwrap(), &["user"])?;
        let mut rows = vec![];
        input.for_each_row(|r| {
            rows.push(r);
            true
        })?;
        Ok(rows)
    }

    fn texts(row: &Row) -> Vec<Cell> {
        row.cells.clone().unwrap()
    }

    fn t(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn csv_with_bom_crlf_semicolons_quotes_and_blank_lines() {
        let rows = read(
            "a.csv",
            b"\xef\xbb\xbfUser ID;Room\r\n@a:x;\"#r;1:x\"\r\n\r\n ; \r\n@b:x;!abc\r\n",
            None,
        )
        .unwrap();
        assert_eq!(rows.len(), 2, "blank line and all-blank row are skipped");
        assert_eq!(rows[0].number, 1);
        assert_eq!(
            (rows[0].line, rows[1].line),
            (2, 5),
            "lines as an editor counts them"
        );
        assert_eq!(texts(&rows[0]), vec![t("@a:x"), t("#r;1:x")]);
        assert_eq!(rows[1].number, 2);
        assert_eq!(texts(&rows[1]), vec![t("@b:x"), t("!abc")]);
    }

    #[test]
    fn csv_tabs_and_short_rows() {
        let rows = read(
            "a.csv",
            b"room\tmxid\n#r:x\t@a:x\n\n\n\"#s\n:x\"\n@c\n",
            None,
        )
        .unwrap();
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 5, 7],
            "LF only, a cell over two lines"
        );
        assert_eq!(texts(&rows[0]), vec![t("@a:x"), t("#r:x")]);
        assert_eq!(texts(&rows[1]), vec![Cell::Empty, t("#s\n:x")]);
    }

    #[test]
    fn csv_missing_required_column_is_refused_up_front() {
        let err = read("a.csv", b"name,room\nalice,#r:x\n", None)
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(msg.contains("no column for `user`"), "{msg}");
        assert!(msg.contains("name, room"), "{msg}");
    }

    #[test]
    fn json_array_streams_objects_and_flags_bad_values() {
        let rows = read(
            "a.json",
            br##"[{"user_id": "@a:x", "room": "#r:x"}, {"user": ["x"], "room": null}, 5]"##,
            None,
        )
        .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(texts(&rows[0]), vec![t("@a:x"), t("#r:x")]);
        let second = texts(&rows[1]);
        assert!(matches!(&second[0], Cell::Bad(m) if m.contains("array")));
        assert_eq!(second[1], Cell::Empty);
        assert!(
            rows[2]
                .cells
                .as_ref()
                .unwrap_err()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn json_broken_half_way_reports_the_position_after_earlier_rows() {
        let mut n = 0;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, "[{\"user\":\"@a:x\"},\n{\"user\": }]").unwrap();
        let spec = InputSpec {
            path: Some(path),
            format: None,
            delimiter: None,
            encoding: None,
            sheet: None,
        };
        let input = Input::open(&spec, Binder::new(JOIN, &[]).unwrap(), &[]).unwrap();
        let err = input
            .for_each_row(|_| {
                n += 1;
                true
            })
            .unwrap_err();
        assert_eq!(n, 1);
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn jsonl_bad_line_is_one_bad_row() {
        let rows = read(
            "a.ndjson",
            b"{\"user\":\"@a:x\",\"room\":\"#r:x\"}\r\n\nnot json\n{\"user\":5}\n{\"mxid\":\"@b:x\"}\n",
            None,
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(texts(&rows[0]), vec![t("@a:x"), t("#r:x")], "CRLF");
        assert!(
            rows[1]
                .cells
                .as_ref()
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert_eq!(texts(&rows[2]), vec![t("5"), Cell::Empty]);
        assert_eq!(rows[3].number, 4, "the rows after a bad line still come");
        assert_eq!(texts(&rows[3]), vec![t("@b:x"), Cell::Empty]);
    }

    #[test]
    fn a_file_not_utf8_anywhere_is_refused_before_any_row() {
        for name in ["a.csv", "a.ndjson", "a.json"] {
            let content: &[u8] = if name == "a.csv" {
                b"user,room\n@a:x,#r:x\n@jos\xe9:x,#r:x\n"
            } else {
                b"{\"user\":\"@a:x\"}\n{\"user\":\"@\xe9:x\"}\n"
            };
            let err = read(name, content, None).unwrap_err().to_string();
            let line = if name == "a.csv" { 3 } else { 2 };
            assert!(
                err.contains(&format!("not UTF-8 (line {line} ")),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn json_keys_that_read_the_same_make_their_row_invalid() {
        let rows = read(
            "a.jsonl",
            b"{\"user\":\"@a:x\",\"User \":\"@b:x\",\"room\":\"#r:x\"}\n{\"user\":\"@c:x\"}\n",
            None,
        )
        .unwrap();
        let why = rows[0].cells.as_ref().unwrap_err();
        assert!(
            why.contains("(`user`)") && why.contains("(`User`)"),
            "{why}"
        );
        assert_eq!(texts(&rows[1]), vec![t("@c:x"), Cell::Empty]);
    }

    #[test]
    fn excel_unicode_text_is_utf16_with_tabs() {
        let mut bytes = vec![0xff, 0xfe];
        let text = "User\tRoom\r\n@jos\u{e9}:x\t#r:x\r\n";
        bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        let rows = read("staff.txt", &bytes, None).unwrap();
        assert_eq!(texts(&rows[0]), vec![t("@jos\u{e9}:x"), t("#r:x")]);
    }

    #[test]
    fn a_workbook_named_csv_is_told_apart() {
        let err = read("a.csv", b"PK\x03\x04rest", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--format xlsx"), "{err}");
    }

    #[test]
    fn control_characters_and_giant_cells_are_bad_cells_quoted_short() {
        assert!(
            matches!(cell("@a\u{0}:x"), Cell::Bad(m) if m.contains("U+0000") && m.contains("character 3"))
        );
        assert!(matches!(cell("\u{1b}[31m"), Cell::Bad(m) if m.contains("U+001B")));
        assert!(
            matches!(cell("a\u{85}b"), Cell::Bad(m) if m.contains("U+0085")),
            "C1"
        );
        assert_eq!(cell("line one\nline two"), t("line one\nline two"));
        let giant = "x".repeat(MAX_CELL + 1);
        let Cell::Bad(why) = cell(&giant) else {
            panic!("a giant cell is bad")
        };
        assert!(why.len() < 300, "{why}");
        assert_eq!(
            quote(&"é".repeat(150)).chars().count(),
            100 + " (100 more bytes)".len() + 1
        );
        let long = format!("@{}:x", "a".repeat(300));
        let err = ids::user(&format!("{long} x"), "x").unwrap_err();
        assert!(err.len() < 250, "{err}");
    }

    #[test]
    fn sniffs_format_without_extension() {
        assert_eq!(sniff(b"  [{}]"), Format::Json);
        assert_eq!(sniff(b"\xef\xbb\xbf{\"a\":1}"), Format::Jsonl);
        assert_eq!(sniff(b"user,room"), Format::Csv);
        let rows = read("a.txt", b"{\"user\":\"@a:x\"}\n", None).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn values_from_a_channel_are_rows_of_their_first_field() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send("@a:x".to_string()).unwrap();
        tx.try_send(" @b:x ".to_string()).unwrap();
        drop(tx);
        let mut rows = vec![];
        Input::from_values("the list", 3, rx)
            .for_each_row(|r| {
                rows.push(r);
                true
            })
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].number, 2);
        assert_eq!(texts(&rows[1]), vec![t("@b:x"), Cell::Empty, Cell::Empty]);
    }

    #[test]
    fn rows_are_counted_for_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, "user,room\n@a:x,!r\n\n@b:x,!r\n").unwrap();
        let binder = || Binder::new(JOIN, &[]).unwrap();
        let spec = |path| InputSpec {
            path,
            format: None,
            delimiter: None,
            encoding: None,
            sheet: None,
        };
        assert_eq!(Input::count_rows(&spec(Some(path)), binder()), Some(2));
        assert_eq!(
            Input::count_rows(&spec(None), binder()),
            None,
            "stdin is read once"
        );
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let spec = InputSpec {
            path: Some("/nonexistent/hires.csv".into()),
            format: None,
            delimiter: None,
            encoding: None,
            sheet: None,
        };
        let err = Input::open(&spec, Binder::new(JOIN, &[]).unwrap(), &[])
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/hires.csv"), "{err}");
    }
}
