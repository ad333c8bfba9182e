//! Real workbooks written by libraries in the test, for the readers to read back: `.xlsx` by
//! rust_xlsxwriter, `.ods` as the OpenDocument zip that LibreOffice writes (mimetype first,
//! stored; a manifest; the cells in content.xml).

use std::io::Write;
use std::path::Path;

/// A cell as a spreadsheet holds it.
#[derive(Debug, Clone)]
pub enum Value {
    Text(String),
    Number(f64),
    Bool(bool),
    Empty,
}

pub fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// Writes `rows` into the first sheet (named `sheet`) of a new .xlsx; `extra` adds a second
/// sheet so that `--sheet` has something to choose.
pub fn write_xlsx(path: &Path, sheet: &str, rows: &[Vec<Value>], extra: Option<&str>) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let ws = book.add_worksheet();
    ws.set_name(sheet).unwrap();
    for (r, row) in rows.iter().enumerate() {
        for (c, value) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match value {
                Value::Text(s) => ws.write_string(r, c, s).map(|_| ()),
                Value::Number(n) => ws.write_number(r, c, *n).map(|_| ()),
                Value::Bool(b) => ws.write_boolean(r, c, *b).map(|_| ()),
                Value::Empty => Ok(()),
            }
            .unwrap();
        }
    }
    if let Some(name) = extra {
        let other = book.add_worksheet();
        other.set_name(name).unwrap();
        other.write_string(0, 0, "nothing here").unwrap();
    }
    book.save(path).unwrap();
}

/// Writes `rows` into a one-sheet .ods.
pub fn write_ods(path: &Path, sheet: &str, rows: &[Vec<Value>]) {
    let mut content = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>"#,
    );
    content.push_str(&format!(r#"<table:table table:name="{}">"#, escape(sheet)));
    for row in rows {
        content.push_str("<table:table-row>");
        for value in row {
            match value {
                Value::Text(s) => content.push_str(&format!(
                    r#"<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>"#,
                    escape(s)
                )),
                Value::Number(n) => content.push_str(&format!(
                    r#"<table:table-cell office:value-type="float" office:value="{n}"><text:p>{n}</text:p></table:table-cell>"#
                )),
                Value::Bool(b) => content.push_str(&format!(
                    r#"<table:table-cell office:value-type="boolean" office:boolean-value="{b}"><text:p>{b}</text:p></table:table-cell>"#
                )),
                Value::Empty => content.push_str("<table:table-cell/>"),
            }
        }
        content.push_str("</table:table-row>");
    }
    content.push_str("</table:table></office:spreadsheet></office:body></office:document-content>");
    let manifest = r#"<?xml version="1.0" encoding="UTF-8"?>
<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#;
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("mimetype", stored).unwrap();
    zip.write_all(b"application/vnd.oasis.opendocument.spreadsheet")
        .unwrap();
    zip.start_file("META-INF/manifest.xml", stored).unwrap();
    zip.write_all(manifest.as_bytes()).unwrap();
    zip.start_file("content.xml", stored).unwrap();
    zip.write_all(content.as_bytes()).unwrap();
    zip.finish().unwrap();
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The cells of the first sheet of an .xlsx, as text, read back with calamine (for checking
/// an annotated workbook).
pub fn read_xlsx(path: &Path) -> Vec<Vec<String>> {
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> = calamine::open_workbook(path).unwrap();
    let first = book.sheet_names()[0].clone();
    let range = book.worksheet_range(&first).unwrap();
    range
        .rows()
        .map(|row| row.iter().map(|c| c.to_string()).collect())
        .collect()
}
