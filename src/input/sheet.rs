//! Workbooks read directly: `.xlsx` and `.ods`, the first sheet or the one `--sheet` names. The
//! first row that has any cell is the header; the rows after it are data, bound and checked as
//! CSV rows are.
//!
//! Memory: an `.xlsx` sheet is streamed cell by cell (calamine's cell reader); only the
//! workbook's shared-strings table is held whole. calamine reads an `.ods` sheet into memory
//! whole, so an `.ods` costs memory in proportion to its size (BENCHMARKS.md measures both).

use std::fs::File;
use std::io::BufReader;

use calamine::{Data, DataRef, Ods, Reader as _, Xlsx};

use super::{Binder, Cell, InputError, Row, cell};

pub enum Book {
    Xlsx(Box<Xlsx<BufReader<File>>>),
    /// The sheet's cells, read whole.
    Ods(calamine::Range<Data>),
}

/// An opened sheet: its header read and bound.
pub struct SheetRows {
    book: Book,
    sheet: String,
    /// For each field, the column feeding it.
    pub bound: Vec<Option<usize>>,
    binder: Binder,
    pub headers: Vec<String>,
    /// Hand on every cell as given too (`--annotate`).
    pub keep_raw: bool,
}

/// Which workbook format.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Xlsx,
    Ods,
}

impl SheetRows {
    pub fn open(
        name: &str,
        file: File,
        kind: Kind,
        wanted: Option<&str>,
        binder: &Binder,
        required: &[&str],
    ) -> Result<SheetRows, InputError> {
        let bad = |e: &dyn std::fmt::Display| InputError::Format {
            name: name.to_string(),
            message: format!("cannot read this workbook: {e}"),
        };
        let reader = BufReader::new(file);
        let (book, sheet) = match kind {
            Kind::Xlsx => {
                let xlsx: Xlsx<_> = calamine::open_workbook_from_rs(reader).map_err(|e| bad(&e))?;
                let sheet = choose(name, &xlsx.sheet_names(), wanted)?;
                (Book::Xlsx(Box::new(xlsx)), sheet)
            }
            Kind::Ods => {
                let mut ods: Ods<_> =
                    calamine::open_workbook_from_rs(reader).map_err(|e| bad(&e))?;
                let sheet = choose(name, &ods.sheet_names(), wanted)?;
                let range = ods.worksheet_range(&sheet).map_err(|e| bad(&e))?;
                (Book::Ods(range), sheet)
            }
        };
        let mut rows = SheetRows {
            book,
            sheet,
            bound: vec![],
            binder: binder.clone(),
            headers: vec![],
            keep_raw: false,
        };
        rows.read_header(name, binder, required)?;
        Ok(rows)
    }

    fn read_header(
        &mut self,
        name: &str,
        binder: &Binder,
        required: &[&str],
    ) -> Result<(), InputError> {
        let mut header = None;
        self.rows(name, |_, cells| {
            header = Some(cells.iter().map(|c| c.text().to_string()).collect());
            false
        })?;
        let headers: Vec<String> = header.ok_or_else(|| InputError::Format {
            name: name.to_string(),
            message: format!(
                "sheet `{}` is empty: expected a header row naming the columns",
                self.sheet
            ),
        })?;
        self.bound = super::bind_header(name, binder, &headers, required)?;
        self.headers = headers;
        Ok(())
    }

    /// Every non-blank row from the top, with its 1-based row number in the sheet, until
    /// `each` returns false.
    fn rows(
        &mut self,
        name: &str,
        mut each: impl FnMut(u32, Vec<SheetCell>) -> bool,
    ) -> Result<(), InputError> {
        let bad = |e: &dyn std::fmt::Display| InputError::Format {
            name: name.to_string(),
            message: format!("cannot read sheet `{}`: {e}", self.sheet),
        };
        match &mut self.book {
            Book::Ods(range) => {
                let top = range.start().map_or(0, |(row, _)| row);
                let left = range.start().map_or(0, |(_, col)| col) as usize;
                for (i, row) in range.rows().enumerate() {
                    let mut cells = vec![SheetCell::Empty; left];
                    cells.extend(row.iter().map(SheetCell::of_data));
                    if cells.iter().all(SheetCell::is_blank) {
                        continue;
                    }
                    if !each(top + i as u32 + 1, cells) {
                        break;
                    }
                }
                Ok(())
            }
            Book::Xlsx(xlsx) => {
                let mut reader = xlsx
                    .worksheet_cells_reader(&self.sheet)
                    .map_err(|e| bad(&e))?;
                let mut current: Option<(u32, Vec<SheetCell>)> = None;
                while let Some(c) = reader.next_cell().map_err(|e| bad(&e))? {
                    let (row, col) = c.get_position();
                    let value = SheetCell::of_ref(c.get_value());
                    if current.as_ref().is_some_and(|(r, _)| *r != row) {
                        let (r, cells) = current.take().expect("a row");
                        if !cells.iter().all(SheetCell::is_blank) && !each(r + 1, cells) {
                            return Ok(());
                        }
                    }
                    let (_, cells) = current.get_or_insert_with(|| (row, vec![]));
                    let col = col as usize;
                    if cells.len() <= col {
                        cells.resize(col + 1, SheetCell::Empty);
                    }
                    cells[col] = value;
                }
                if let Some((r, cells)) = current
                    && !cells.iter().all(SheetCell::is_blank)
                {
                    each(r + 1, cells);
                }
                Ok(())
            }
        }
    }

    /// Calls `each` for every data row (the rows after the header).
    pub fn for_each_row(
        mut self,
        name: &str,
        mut each: impl FnMut(Row) -> bool,
    ) -> Result<(), InputError> {
        let bound = std::mem::take(&mut self.bound);
        let binder = self.binder.clone();
        let keep_raw = self.keep_raw;
        let mut number = 0u64;
        let mut header = true;
        self.rows(name, |line, cells| {
            if std::mem::take(&mut header) {
                return true;
            }
            number += 1;
            let mut row: Vec<Cell> = bound
                .iter()
                .map(|at| match at.and_then(|i| cells.get(i)) {
                    None => Cell::Empty,
                    Some(c) => c.to_cell(),
                })
                .collect();
            binder.finish(&mut row);
            let raw = if keep_raw {
                cells.iter().map(|c| c.text().to_string()).collect()
            } else {
                vec![]
            };
            each(Row {
                number,
                line: u64::from(line),
                cells: Ok(row),
                raw,
            })
        })
    }
}

/// The sheet `wanted` names (exactly, or else ignoring case), or the first one.
fn choose(name: &str, names: &[String], wanted: Option<&str>) -> Result<String, InputError> {
    let found = match wanted {
        None => names.first(),
        Some(w) => names
            .iter()
            .find(|n| *n == w)
            .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(w.trim()))),
    };
    found.cloned().ok_or_else(|| InputError::Format {
        name: name.to_string(),
        message: match wanted {
            Some(w) => format!(
                "there is no sheet `{w}`; its sheets are: {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "the workbook has no sheets".to_string(),
        },
    })
}

/// A cell's value as text, the way a person reads it in the sheet.
#[derive(Debug, Clone, PartialEq)]
pub enum SheetCell {
    Empty,
    Text(String),
    /// A formula error (`#N/A`, `#REF!`), which no field takes.
    Error(String),
}

impl SheetCell {
    fn of_data(value: &Data) -> SheetCell {
        match value {
            Data::Empty => SheetCell::Empty,
            Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => {
                SheetCell::Text(s.clone())
            }
            Data::Int(i) => SheetCell::Text(i.to_string()),
            Data::Float(f) => SheetCell::Text(number(*f)),
            Data::Bool(b) => SheetCell::Text(b.to_string()),
            Data::DateTime(d) => SheetCell::Text(date(d)),
            Data::Error(e) => SheetCell::Error(e.to_string()),
        }
    }

    fn of_ref(value: &DataRef<'_>) -> SheetCell {
        match value {
            DataRef::SharedString(s) => SheetCell::Text(s.to_string()),
            DataRef::Empty => SheetCell::Empty,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
                SheetCell::Text(s.clone())
            }
            DataRef::Int(i) => SheetCell::Text(i.to_string()),
            DataRef::Float(f) => SheetCell::Text(number(*f)),
            DataRef::Bool(b) => SheetCell::Text(b.to_string()),
            DataRef::DateTime(d) => SheetCell::Text(date(d)),
            DataRef::Error(e) => SheetCell::Error(e.to_string()),
        }
    }

    fn is_blank(&self) -> bool {
        match self {
            SheetCell::Empty => true,
            SheetCell::Text(t) => t.trim().is_empty(),
            SheetCell::Error(_) => false,
        }
    }

    pub fn text(&self) -> &str {
        match self {
            SheetCell::Empty => "",
            SheetCell::Text(t) | SheetCell::Error(t) => t,
        }
    }

    fn to_cell(&self) -> Cell {
        match self {
            SheetCell::Empty => Cell::Empty,
            SheetCell::Text(t) => cell(t),
            SheetCell::Error(e) => Cell::Bad(format!("is a formula error in the sheet ({e})")),
        }
    }
}

/// A number as a person typed it: `42`, not `42.0`; `0.5` stays `0.5`.
fn number(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// A date as RFC 3339 (`2024-03-01`, or `2024-03-01T09:30:00` when it has a time); a
/// duration as its number of days.
fn date(d: &calamine::ExcelDateTime) -> String {
    if d.is_duration() {
        return number(d.as_f64());
    }
    let (y, mo, day, h, mi, s, _) = d.to_ymd_hms_milli();
    if (h, mi, s) == (0, 0, 0) {
        format!("{y:04}-{mo:02}-{day:02}")
    } else {
        format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_typed() {
        assert_eq!(number(42.0), "42");
        assert_eq!(number(-7.0), "-7");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1e20), "100000000000000000000");
    }

    #[test]
    fn a_missing_sheet_lists_the_sheets() {
        let names = vec!["Staff".to_string(), "Rooms".to_string()];
        assert_eq!(choose("b.xlsx", &names, None).unwrap(), "Staff");
        assert_eq!(choose("b.xlsx", &names, Some("rooms")).unwrap(), "Rooms");
        let err = choose("b.xlsx", &names, Some("Leavers"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no sheet `Leavers`") && err.contains("`Staff`, `Rooms`"),
            "{err}"
        );
    }
}
