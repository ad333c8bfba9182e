//! JSON rows: an array of objects read element by element (never loaded whole), or JSON Lines.

use std::io::{BufRead, BufReader, Read};

use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{Binder, Cell, InputError, Row, cell};

/// A JSON array of objects. A syntax error ends the reading: nothing after it can be trusted.
pub fn array(
    name: &str,
    reader: BufReader<Box<dyn Read + Send>>,
    binder: &Binder,
    each: impl FnMut(Row) -> bool,
) -> Result<(), InputError> {
    let mut rows = ArrayRows {
        binder,
        each,
        number: 0,
        stopped: false,
    };
    let mut de = serde_json::Deserializer::from_reader(SkipBom::new(reader));
    let result = de.deserialize_seq(&mut rows).and_then(|()| de.end());
    match result {
        Err(_) if rows.stopped => Ok(()),
        Err(e) => Err(InputError::Format {
            name: name.to_string(),
            message: if e.is_data() && rows.number == 0 && e.line() <= 1 {
                "expected a JSON array of objects ([{...}, ...])".to_string()
            } else {
                format!("invalid JSON: {e}")
            },
        }),
        Ok(()) => Ok(()),
    }
}

struct ArrayRows<'b, F> {
    binder: &'b Binder,
    each: F,
    number: u64,
    stopped: bool,
}

impl<'de, F: FnMut(Row) -> bool> Visitor<'de> for &mut ArrayRows<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            self.number += 1;
            let row = Row {
                number: self.number,
                line: self.number,
                raw: vec![],
                cells: object_cells(value, self.binder),
            };
            if !(self.each)(row) {
                self.stopped = true;
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

/// JSON Lines: one object per line; a line that does not parse is one bad row, not the end.
pub fn lines(
    name: &str,
    reader: BufReader<Box<dyn Read + Send>>,
    binder: &Binder,
    mut each: impl FnMut(Row) -> bool,
) -> Result<(), InputError> {
    let mut number = 0;
    // Bytes, not `lines()`: a line that is not UTF-8 is one bad row, and the rest still runs.
    for (at, line) in SkipBom::new(reader).split(b'\n').enumerate() {
        let line = line.map_err(|source| InputError::Io {
            name: name.to_string(),
            source,
        })?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.trim_ascii().is_empty() {
            continue;
        }
        number += 1;
        let cells = match std::str::from_utf8(line) {
            Err(e) => Err(format!(
                "line is not valid UTF-8 (byte {}): save the file as UTF-8",
                e.valid_up_to() + 1
            )),
            Ok(line) => match serde_json::from_str::<Value>(line) {
                Ok(value) => object_cells(value, binder),
                Err(e) => Err(format!("line is not valid JSON: {e}")),
            },
        };
        if !each(Row {
            number,
            line: at as u64 + 1,
            cells,
            raw: vec![],
        }) {
            break;
        }
    }
    Ok(())
}

fn object_cells(value: Value, binder: &Binder) -> Result<Vec<Cell>, String> {
    let Value::Object(object) = value else {
        return Err(format!("not a JSON object: {}", kind(&value)));
    };
    // Keys that differ only in case or spaces make the row invalid, not the file: the file was
    // checked as far as its header only for CSV and sheets, and every object has its own keys.
    let bound = binder.bind(object.keys().map(String::as_str))?;
    let mut cells: Vec<Cell> = bound.iter().map(|at| value_cell(&object, *at)).collect();
    binder.finish(&mut cells);
    Ok(cells)
}

fn value_cell(object: &Map<String, Value>, at: Option<usize>) -> Cell {
    match at.and_then(|i| object.values().nth(i)) {
        None | Some(Value::Null) => Cell::Empty,
        Some(Value::String(s)) => cell(s),
        Some(v @ (Value::Bool(_) | Value::Number(_))) => Cell::Text(v.to_string()),
        Some(v) => Cell::Bad(format!("expected text, found {}", kind(v))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Drops a leading UTF-8 byte order mark, which serde_json would reject.
struct SkipBom<R> {
    inner: R,
    checked: bool,
}

impl<R: BufRead> SkipBom<R> {
    fn new(inner: R) -> Self {
        SkipBom {
            inner,
            checked: false,
        }
    }

    fn check(&mut self) -> std::io::Result<()> {
        if !self.checked {
            self.checked = true;
            if self.inner.fill_buf()?.starts_with(b"\xef\xbb\xbf") {
                self.inner.consume(3);
            }
        }
        Ok(())
    }
}

impl<R: BufRead> Read for SkipBom<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        self.inner.read(buf)
    }
}

impl<R: BufRead> BufRead for SkipBom<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt)
    }
}
