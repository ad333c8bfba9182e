//! What an earlier run recorded beyond a row's status: the latest non-empty value of one
//! result field per key (the room id behind an alias, which a purge removes).

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use crate::results::file::open_input;
use crate::results::{Key, Lines};

/// For each key of `job` in the results file at `path`, the latest non-empty `column`. A file
/// that does not exist yet is an empty history; one that is not `job`'s results is refused.
/// Memory: one entry per key that has a value, like `--resume`'s own reading of the file.
pub fn recorded(path: &Path, job: &str, column: &str) -> Result<HashMap<String, String>, String> {
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let Some(file) = open_input(path).map_err(|e| e.to_string())? else {
        return Ok(HashMap::new());
    };
    let mut lines = Lines::new(BufReader::new(file)).map_err(|e| shown(&e))?;
    let Some(at) = lines.header().iter().position(|h| h == column.as_bytes()) else {
        return Ok(HashMap::new());
    };
    let mut found = HashMap::new();
    let mut record = csv::ByteRecord::new();
    while lines.next(&mut record).map_err(|e| shown(&e))?.is_some() {
        let key = lines.key(&record);
        if Key::job_of(key) != job {
            return Err(format!(
                "{} holds the results of `{}`, not of `{job}`: name another results file with -o",
                path.display(),
                Key::job_of(key)
            ));
        }
        let value = record
            .get(at)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        if !value.is_empty() {
            found.insert(key.to_string(), value.into_owned());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{ResultLine, ResultsWriter, Status};

    fn line(key: &str, status: Status, room_id: &str) -> ResultLine {
        ResultLine {
            row: 1,
            key: key.into(),
            status,
            http_status: None,
            errcode: String::new(),
            cause: None,
            message: String::new(),
            attempts: 1,
            duration: Default::default(),
            fields: vec!["#a:x".into(), room_id.into()],
        }
    }

    #[test]
    fn the_latest_value_per_key_and_nothing_for_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        assert!(
            recorded(&path, "delete-rooms", "room_id")
                .unwrap()
                .is_empty()
        );
        let mut w = ResultsWriter::open(&path, "delete-rooms", &["room", "room_id"]).unwrap();
        w.write(&line("delete-rooms #a:x", Status::Pending, ""))
            .unwrap();
        w.write(&line("delete-rooms #a:x", Status::Ok, "!old"))
            .unwrap();
        w.write(&line("delete-rooms #a:x", Status::Unchanged, ""))
            .unwrap();
        w.write(&line("delete-rooms #b:x", Status::Failed, ""))
            .unwrap();
        w.sync().unwrap();
        drop(w);
        let found = recorded(&path, "delete-rooms", "room_id").unwrap();
        assert_eq!(
            found.get("delete-rooms #a:x").map(String::as_str),
            Some("!old")
        );
        assert_eq!(found.len(), 1, "{found:?}");
        let other = recorded(&path, "create-rooms", "room_id").unwrap_err();
        assert!(other.contains("delete-rooms"), "{other}");
    }
}
