//! Property tests of the input readers: random bytes never panic (CSV, a JSON array, JSON
//! Lines, and the format sniffing), and in CSV and JSON Lines a bad line costs only itself:
//! the rows after it are read, with the numbers they would have had.
//!
//! A seeded generator (`fastrand`, already a dependency), as in the results reader's property
//! tests: the same cases on every run, a bounded time, a failing seed to rerun with
//! `SYNBATCH_SEED=<seed>`.

use std::io::{BufReader, Read};

use fastrand::Rng;

use super::{Binder, Cell, FieldDef, ROOM, Row, USER, csv_rows, json_rows, sniff};

const JOIN: &[FieldDef] = &[USER, ROOM];

fn seeds(cases: u64) -> Vec<u64> {
    match std::env::var("SYNBATCH_SEED") {
        Ok(seed) => vec![seed.parse().expect("SYNBATCH_SEED is a number")],
        Err(_) => (0..cases).collect(),
    }
}

fn reader(bytes: &[u8]) -> BufReader<Box<dyn Read + Send>> {
    BufReader::with_capacity(
        super::BUFFER,
        Box::new(std::io::Cursor::new(bytes.to_vec())),
    )
}

fn binder() -> Binder {
    Binder::new(JOIN, &[]).unwrap()
}

/// Every row of a CSV input, or the error that stopped it.
fn csv(bytes: &[u8]) -> Result<Vec<Row>, String> {
    let rows = csv_rows::CsvRows::open("t.csv", reader(bytes), None, binder(), &[])
        .map_err(|e| e.to_string())?;
    let mut out = vec![];
    rows.for_each_row("t.csv", |r| {
        out.push(r);
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

fn jsonl(bytes: &[u8]) -> Vec<Row> {
    let mut out = vec![];
    json_rows::lines("t.jsonl", reader(bytes), &binder(), |r| {
        out.push(r);
        true
    })
    .unwrap();
    out
}

fn json_array(bytes: &[u8]) -> Result<Vec<Row>, String> {
    let mut out = vec![];
    json_rows::array("t.json", reader(bytes), &binder(), |r| {
        out.push(r);
        true
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Random bytes, often from an alphabet of what matters to the readers.
fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let alphabet = b"{}[]\",:;\t\r\n\0\\ \xef\xbb\xbfu@#ab1";
    (0..len)
        .map(|_| {
            if rng.bool() {
                alphabet[rng.usize(..alphabet.len())]
            } else {
                rng.u8(..)
            }
        })
        .collect()
}

#[test]
fn random_bytes_never_panic() {
    for seed in seeds(400) {
        let mut rng = Rng::with_seed(seed);
        let len = rng.usize(0..3000);
        let mut bytes = random_bytes(&mut rng, len);
        // Often a plausible start, so that the readers get past their first checks.
        let start: &[u8] = match rng.u8(0..4) {
            0 => b"user,room\n",
            1 => b"[{\"user\": \"@a:x\"},",
            2 => b"{\"user\": \"@a:x\"}\n",
            _ => b"",
        };
        bytes.splice(0..0, start.iter().copied());
        let _ = sniff(&bytes);
        let _ = csv(&bytes);
        let _ = jsonl(&bytes);
        let _ = json_array(&bytes);
    }
}

/// A damaged line for a line-based input: not blank, no line break, and for CSV nothing that
/// could open a quoted cell (a quote starting a cell would rightly run on over the next lines:
/// CSV cells may hold line breaks, so such a quote cannot be told from a stray one).
fn damaged(rng: &mut Rng, csv: bool) -> Vec<u8> {
    let mut line = match rng.u8(0..6) {
        0 => b"@\xff\xfe:x,#r\xc3:x".to_vec(), // not UTF-8
        1 => b"\0\0\0,\0".to_vec(),
        2 => b"a,b,c,d,e,f,g".to_vec(), // too many cells
        3 => b"x\"y,z\"\"w".to_vec(),   // quotes inside cells
        4 => vec![b'z'; rng.usize(10_000..200_000)],
        _ => {
            let len = rng.usize(1..300);
            let mut bytes = random_bytes(rng, len);
            bytes.retain(|b| *b != b'\n' && !(csv && matches!(b, b'\r' | b'"')));
            bytes
        }
    };
    // Not blank, even once a byte order mark is read past.
    let blank = |b: &u8| b.is_ascii_whitespace() || *b == b',' || *b == 0xef;
    if line.first().is_none_or(blank) {
        line.insert(0, b'x');
    }
    line
}

/// A valid row's line: its cells, plain or quoted, maybe padded with spaces.
fn valid_csv(rng: &mut Rng, n: usize) -> (Vec<u8>, [String; 2]) {
    let user = format!("@u{n}:x");
    let room = format!("#r{n}, \"q\":x");
    let quoted_room = format!("\"{}\"", room.replace('"', "\"\""));
    let pad = if rng.bool() { " " } else { "" };
    let line = format!("{pad}{user}{pad},{quoted_room}");
    (line.into_bytes(), [user, room])
}

fn valid_jsonl(n: usize) -> (Vec<u8>, [String; 2]) {
    let user = format!("@u{n}:x");
    let room = format!("#r{n}, \"q\":x");
    let line = serde_json::json!({"user_id": user, "room": room}).to_string();
    (line.into_bytes(), [user, room])
}

/// What a reader must give back: the number and cells of each valid row, and how many rows
/// there are in all (each damaged line is one row).
struct Expected {
    valid: Vec<(u64, [String; 2])>,
    rows: u64,
}

/// An input of valid rows, damaged lines, blank lines, and CRLF line ends.
fn generate(rng: &mut Rng, csv: bool) -> (Vec<u8>, Expected) {
    let mut bytes = if csv {
        b"\xef\xbb\xbfuser,room\r\n".to_vec()
    } else {
        vec![]
    };
    let mut expected = Expected {
        valid: vec![],
        rows: 0,
    };
    for n in 0..rng.usize(0..60) {
        let end: &[u8] = if rng.bool() { b"\n" } else { b"\r\n" };
        match rng.u8(0..10) {
            0 => {
                // Blank lines are no rows (and `,` is a spreadsheet's empty row).
                let blank: &[u8] = match rng.u8(0..3) {
                    0 => b"",
                    1 if csv => b" , ",
                    _ => b"  ",
                };
                bytes.extend_from_slice(blank);
            }
            1..=4 => {
                bytes.extend(damaged(rng, csv));
                expected.rows += 1;
            }
            _ => {
                let (line, cells) = if csv {
                    valid_csv(rng, n)
                } else {
                    valid_jsonl(n)
                };
                bytes.extend(line);
                expected.rows += 1;
                expected.valid.push((expected.rows, cells));
            }
        }
        bytes.extend_from_slice(end);
    }
    (bytes, expected)
}

fn check(rows: &[Row], expected: &Expected, seed: u64) {
    let numbers: Vec<u64> = rows.iter().map(|r| r.number).collect();
    let all: Vec<u64> = (1..=expected.rows).collect();
    assert_eq!(numbers, all, "seed {seed}");
    for (number, [user, room]) in &expected.valid {
        let row = &rows[*number as usize - 1];
        assert_eq!(
            row.cells,
            Ok(vec![Cell::Text(user.clone()), Cell::Text(room.clone())]),
            "row {number}, seed {seed}"
        );
    }
}

#[test]
fn a_bad_csv_line_costs_only_itself() {
    for seed in seeds(150) {
        let mut rng = Rng::with_seed(seed);
        let (bytes, expected) = generate(&mut rng, true);
        let rows = csv(&bytes).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        check(&rows, &expected, seed);
    }
}

#[test]
fn a_bad_json_line_costs_only_itself() {
    for seed in seeds(150) {
        let mut rng = Rng::with_seed(seed);
        let (bytes, expected) = generate(&mut rng, false);
        check(&jsonl(&bytes), &expected, seed);
    }
}
