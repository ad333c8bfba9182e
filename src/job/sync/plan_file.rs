//! The plan file: one CSV line per step (`action,user,room,before,after,reason`), in the order
//! the apply runs them, so that it opens in a spreadsheet and reads as what will happen.

use std::path::{Path, PathBuf};

use super::plan::Step;

pub const HEADER: [&str; 6] = ["action", "user", "room", "before", "after", "reason"];

/// `<dir>/<stem>.plan.csv` beside the sheet; `sync-members.plan.csv` here for stdin.
pub fn default_path(input: Option<&Path>) -> PathBuf {
    crate::rows::plan::beside_input(input, "sync-members", "plan.csv")
}

/// Writes the plan, replacing an earlier one (a plan is recomputed on every run).
pub fn write(path: &Path, steps: &[Step]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot write the plan {}: {e}", path.display());
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(fail(&"it is not a regular file"));
    }
    let mut out = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    out.write_record(HEADER).map_err(|e| fail(&e))?;
    for s in steps {
        out.write_record([
            s.action.as_str(),
            &s.user,
            &s.room,
            &s.before,
            &s.after,
            &s.reason,
        ])
        .map_err(|e| fail(&e))?;
    }
    out.flush().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::sync::plan::Action;

    #[test]
    fn plan_beside_the_sheet() {
        assert_eq!(
            default_path(Some(Path::new("hr/staff.xlsx"))),
            PathBuf::from("hr/staff.plan.csv")
        );
        assert_eq!(default_path(None), PathBuf::from("sync-members.plan.csv"));
    }

    #[test]
    fn writes_one_line_per_step_with_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let step = Step {
            action: Action::Kick,
            user: "@a:x.org".into(),
            room: "#r:x.org".into(),
            before: "join".into(),
            after: "leave".into(),
            reason: "not in the sheet, \"quoted\"".into(),
            settled: false,
        };
        write(&path, &[step]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "action,user,room,before,after,reason\n\
             kick,@a:x.org,#r:x.org,join,leave,\"not in the sheet, \"\"quoted\"\"\"\n"
        );
    }
}
