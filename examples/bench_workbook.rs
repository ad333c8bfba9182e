//! For bench/sheets.sh: writes the rows of a CSV file as an .xlsx (rust_xlsxwriter) and an .ods
//! (the tests' writer), so that the same data can be read in the three formats.
//!
//!     cargo run --release --example bench_workbook -- IN.csv OUT.xlsx OUT.ods

#[allow(dead_code)]
#[path = "../tests/it/workbooks.rs"]
mod workbooks;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, xlsx, ods] = &args[..] else {
        eprintln!("usage: bench_workbook IN.csv OUT.xlsx OUT.ods");
        std::process::exit(2);
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(input)
        .expect("read the CSV");
    let rows: Vec<Vec<workbooks::Value>> = reader
        .records()
        .map(|r| {
            r.expect("a CSV record")
                .iter()
                .map(|cell| match cell.parse::<f64>() {
                    Ok(n) => workbooks::Value::Number(n),
                    Err(_) => workbooks::text(cell),
                })
                .collect()
        })
        .collect();
    workbooks::write_xlsx(std::path::Path::new(xlsx), "Staff", &rows, None);
    workbooks::write_ods(std::path::Path::new(ods), "Staff", &rows);
}
