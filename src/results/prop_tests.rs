//! Property tests of the results-file reader: generated files of valid lines mixed with
//! damaged ones (stray quotes, NULs, invalid UTF-8, very long lines, wrong widths, bare CRs,
//! random bytes), checked against a model: every valid line's key and status are read as
//! written (the latest wins), and each damaged line is counted as skipped and costs no other
//! line. Random bytes never panic.
//!
//! A seeded generator (`fastrand`, already a dependency) rather than proptest: the cases are
//! the same on every run (a failure names its seed; rerun it with `SYNBATCH_SEED=<seed>`),
//! the time is bounded by the fixed number of cases, and no new crate is needed.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use fastrand::Rng;

use super::lines::MAX_LINE;
use super::summary::summarise;
use super::{Latest, Lines, ResultLine, ResultsWriter, Status, cells, header, one_line};

const FIELDS: [&str; 2] = ["user", "room"];
/// The width of a line: the fixed columns and the job's two fields.
const WIDTH: usize = 12;

/// The seeds to run: `SYNBATCH_SEED` alone, or `0..cases`.
pub(crate) fn seeds(cases: u64) -> Vec<u64> {
    match std::env::var("SYNBATCH_SEED") {
        Ok(seed) => vec![seed.parse().expect("SYNBATCH_SEED is a number")],
        Err(_) => (0..cases).collect(),
    }
}

/// Text for a cell: plain, or with what a CSV writer must quote, or odd characters.
fn text(rng: &mut Rng, plain: bool) -> String {
    const PLAIN: &[&str] = &["a", "b", "@u:x", "#r:x", "é", "日本", " ", "-", "x.y", "\0"];
    const ODD: &[&str] = &[",", "\"", "\"\"", "\n", "\r", "\r\n", ", ", "'", ";", "\t"];
    let n = rng.usize(0..8);
    (0..n)
        .map(|_| {
            if plain || rng.u8(0..4) > 0 {
                PLAIN[rng.usize(..PLAIN.len())]
            } else {
                ODD[rng.usize(..ODD.len())]
            }
        })
        .collect()
}

const STATUSES: [Status; 5] = [
    Status::Ok,
    Status::Unchanged,
    Status::Failed,
    Status::Invalid,
    Status::Pending,
];

/// A valid line: its key from a small pool (so that later lines supersede earlier ones) or new;
/// with `plain`, no cell needs quoting.
fn valid(rng: &mut Rng, n: usize, plain: bool) -> ResultLine {
    let key = match rng.u8(0..4) {
        0 => format!("join pool{}", rng.u8(0..6)),
        1 if !plain => format!("join {}{n}", "k".repeat(rng.usize(1000..5000))),
        _ => format!("join {}{n}", text(rng, plain)),
    };
    ResultLine {
        row: n as u64,
        key,
        status: STATUSES[rng.usize(..STATUSES.len())],
        http_status: rng.bool().then_some(200),
        errcode: if rng.bool() {
            "M_X".into()
        } else {
            text(rng, plain)
        },
        cause: rng.bool().then_some(super::Cause::UserNotFound),
        message: text(rng, plain),
        attempts: rng.u32(0..9),
        duration: Duration::from_millis(rng.u64(0..5000)),
        fields: vec![text(rng, plain), text(rng, plain)],
    }
}

/// A line as the writer writes it, without its newline.
fn encode(line: &ResultLine) -> Vec<u8> {
    let mut csv = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(vec![]);
    csv.write_record(cells(line).iter().map(|c| c.as_ref()))
        .unwrap();
    let mut bytes = csv.into_inner().unwrap();
    assert_eq!(bytes.pop(), Some(b'\n'));
    assert!(!bytes.contains(&b'\n'), "one physical line");
    bytes
}

/// Splits an encoded plain line (no quoted cells) into its cells.
fn split(line: &[u8]) -> Vec<Vec<u8>> {
    assert!(!line.contains(&b'"'), "{}", String::from_utf8_lossy(line));
    let cells: Vec<Vec<u8>> = line.split(|b| *b == b',').map(<[u8]>::to_vec).collect();
    assert_eq!(cells.len(), WIDTH, "{}", String::from_utf8_lossy(line));
    cells
}

fn join(cells: &[Vec<u8>]) -> Vec<u8> {
    cells.join(&b","[..])
}

/// A damaged line, without its newline, that no reader could take as a record of the file:
/// each kind is sure to be unreadable by construction.
fn damaged(rng: &mut Rng, n: usize) -> Vec<u8> {
    let plain = encode(&valid(rng, n, true));
    let mut cells = split(&plain);
    // Lines longer than any line read are rare: each costs a megabyte.
    let kind = match rng.u8(0..9) {
        6 if rng.u8(0..40) > 0 => 7,
        kind => kind,
    };
    match kind {
        // A stray quote opening a cell (before the last) that never closes: the rest of the
        // line is that one cell.
        0 => {
            let at = rng.usize(0..WIDTH - 1);
            cells[at].insert(0, b'"');
            join(&cells)
        }
        // NULs or other bytes in the status.
        1 => {
            cells[2] = match rng.u8(0..4) {
                0 => b"o\0k".to_vec(),
                1 => b"OK".to_vec(),
                2 => b"".to_vec(),
                _ => b"done".to_vec(),
            };
            join(&cells)
        }
        // A key or status that is not UTF-8.
        2 => {
            let at = if rng.bool() { 1 } else { 2 };
            cells[at].extend_from_slice(&[0xff, 0xfe, 0xc3]);
            join(&cells)
        }
        // No key.
        3 => {
            cells[1].clear();
            join(&cells)
        }
        // A cell too few or too many.
        4 => {
            if rng.bool() {
                cells.remove(rng.usize(0..WIDTH));
            } else {
                cells.insert(rng.usize(0..WIDTH), b"extra".to_vec());
            }
            join(&cells)
        }
        // A bare CR between cells, or after a whole line: two records on one line.
        5 if rng.bool() => {
            let at = rng.usize(1..WIDTH - 1);
            cells[at].insert(0, b'\r');
            join(&cells)
        }
        5 => {
            let mut line = join(&cells);
            line.push(b'\r');
            line.extend(encode(&valid(rng, n, true)));
            line
        }
        // Longer than any line is read.
        6 => {
            let mut line = join(&cells);
            line.resize(MAX_LINE + rng.usize(1..100), b'x');
            line
        }
        // Random bytes without a comma or newline: one cell, or none.
        _ => {
            let len = rng.usize(1..200);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| rng.u8(..))
                .filter(|b| *b != b'\n' && *b != b',')
                .collect();
            // Not blank once a trailing CR is taken as part of a CRLF.
            if bytes.iter().all(|b| *b == b'\r') {
                bytes.insert(0, b'x');
            }
            bytes
        }
    }
}

/// What the reader must find: each key's latest status, and which lines it must skip.
#[derive(Default)]
struct Model {
    latest: HashMap<String, Status>,
    valid_lines: u64,
    unreadable: Vec<u64>,
}

/// Writes a results file of valid and damaged lines in `path`; returns the model.
fn generate(rng: &mut Rng, path: &Path) -> Model {
    let mut model = Model::default();
    let mut w = ResultsWriter::open(path, "join", &FIELDS).unwrap();
    let mut raw = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let mut number = 1; // the header
    // The first readable line names the job: a valid line first, as a run writes.
    let first = valid(rng, 0, false);
    w.write(&first).unwrap();
    number += 1;
    model.valid_lines += 1;
    model
        .latest
        .insert(one_line(&first.key).into(), first.status);
    for n in 1..rng.usize(1..80) {
        w.flush().unwrap();
        number += 1;
        match rng.u8(0..10) {
            // Through the writer.
            0..=3 => {
                let line = valid(rng, n, false);
                w.write(&line).unwrap();
                model.valid_lines += 1;
                model.latest.insert(one_line(&line.key).into(), line.status);
            }
            // Written with CRLF, as a spreadsheet saves it.
            4 => {
                let line = valid(rng, n, false);
                let mut bytes = encode(&line);
                bytes.extend_from_slice(b"\r\n");
                raw.write_all(&bytes).unwrap();
                model.valid_lines += 1;
                model.latest.insert(one_line(&line.key).into(), line.status);
            }
            // A blank line: no record, not counted.
            5 => raw
                .write_all(if rng.bool() { b"\n" } else { b"\r\n" })
                .unwrap(),
            _ => {
                let mut bytes = damaged(rng, n);
                bytes.extend_from_slice(if rng.bool() { b"\n" } else { b"\r\n" });
                raw.write_all(&bytes).unwrap();
                model.unreadable.push(number);
            }
        }
    }
    w.flush().unwrap();
    // Sometimes a last line torn by a crash: ignored, and not counted.
    if rng.u8(0..3) == 0 {
        let mut bytes = if rng.bool() {
            encode(&valid(rng, 999, false))
        } else {
            damaged(rng, 999)
        };
        bytes.truncate(rng.usize(1..=bytes.len()));
        raw.write_all(&bytes).unwrap();
    }
    model
}

#[test]
fn a_damaged_line_costs_only_itself() {
    for seed in seeds(120) {
        let mut rng = Rng::with_seed(seed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let model = generate(&mut rng, &path);
        let context = || {
            format!(
                "seed {seed}: {}",
                String::from_utf8_lossy(&std::fs::read(&path).unwrap())
            )
        };

        let latest =
            Latest::read_file(&path, "join").unwrap_or_else(|e| panic!("{e}; {}", context()));
        assert_eq!(latest.len(), model.latest.len(), "{}", context());
        for (key, status) in &model.latest {
            assert_eq!(latest.get(key), Some(*status), "{key:?}; {}", context());
        }
        let unreadable = latest.unreadable();
        assert_eq!(
            unreadable.count,
            model.unreadable.len() as u64,
            "{}",
            context()
        );
        let shown = model.unreadable.len().min(10);
        assert_eq!(unreadable.first, model.unreadable[..shown], "{}", context());

        let summary = summarise(&path, None).unwrap();
        assert_eq!(summary.lines, model.valid_lines, "seed {seed}");
        assert_eq!(summary.unreadable, *unreadable, "seed {seed}");
        for status in STATUSES {
            let expected = model.latest.values().filter(|s| **s == status).count() as u64;
            let found = summary.by_status.get(status.as_str()).copied().unwrap_or(0);
            assert_eq!(found, expected, "{status:?}, seed {seed}");
        }
        // The next run appends after it all and is read back.
        let mut w = ResultsWriter::open(&path, "join", &FIELDS).unwrap();
        let line = valid(&mut rng, 1000, false);
        w.write(&line).unwrap();
        w.flush().unwrap(); // to the OS; a sync to disk per case would be slow
        drop(w);
        let latest = Latest::read_file(&path, "join").unwrap();
        assert_eq!(latest.get(&line.key), Some(line.status), "seed {seed}");
        assert_eq!(
            latest.unreadable().count,
            model.unreadable.len() as u64,
            "seed {seed}"
        );
    }
}

/// Random bytes, alone or after a valid header: the reader, the resume loader, the report and
/// the writer's checks may refuse them, never panic.
#[test]
fn random_bytes_never_panic() {
    let head = header(&FIELDS).join(",") + "\n";
    for seed in seeds(300) {
        let mut rng = Rng::with_seed(seed);
        let len = rng.usize(0..2000);
        let alphabet = b"ab,\"\r\n\0\xff\xc3 ok";
        let mut bytes: Vec<u8> = if rng.bool() {
            head.clone().into_bytes()
        } else {
            vec![]
        };
        bytes.extend((0..len).map(|_| {
            if rng.bool() {
                alphabet[rng.usize(..alphabet.len())]
            } else {
                rng.u8(..)
            }
        }));
        let mut lines = Lines::new(&bytes[..]).unwrap();
        let mut record = csv::ByteRecord::new();
        while let Some(entry) = lines.next(&mut record).unwrap() {
            assert_eq!(record.len(), lines.header().len(), "seed {seed}");
            assert!(entry.number >= 2, "seed {seed}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, &bytes).unwrap();
        let _ = Latest::read_file(&path, "join");
        let _ = summarise(&path, None);
        let _ = ResultsWriter::open(&path, "join", &FIELDS);
    }
}
