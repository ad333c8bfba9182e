//! The rules for the files synbatch writes other than the ones a job owns: a results file
//! (appended to) and `report --failed OUT` (created, or replaced).
//!
//! - Never through a symbolic link: a link in the last part of the path is refused, even one
//!   pointing at a regular file (it could be made to point anywhere, and the admin running a
//!   bulk job is often root). Links among the directories of the path are followed.
//! - Only a regular file: a directory, fifo, socket or device is refused before anything is
//!   written to it (`-o /dev/null` does not turn a run into one that records nothing).
//! - A new file is created with `O_CREAT | O_EXCL`, so that a link or file put in its place
//!   between the check and the creation is refused, not followed.
//! - An existing file is looked at before it is opened (opening a device can do things), then
//!   opened with `O_NOFOLLOW | O_NONBLOCK` (a link swapped in fails, a fifo swapped in does not
//!   block the open) and checked again by what was opened.
//! - An existing file must belong to the user synbatch runs as and have a single name when
//!   synbatch runs as root (root can write anywhere, so a file planted by another user, or a
//!   hard link to a system file, would be written with root's rights), and always for
//!   `report --failed` (a report replaces only a file of its own). A results file shared by
//!   several admins (group-writable) is appended to when the permissions allow it.
//!
//! Reading a results file (`--resume`, `report`) follows links but still takes only a regular
//! file: a fifo would block the run, a device would be read forever.

use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;

use super::{ResultsError, io_err};
use crate::file_kind::describe;
#[cfg(unix)]
use crate::file_kind::euid;

/// How an output file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A results file: read and appended to; created if missing.
    Append,
    /// `report --failed OUT`: written from the start; created if missing, emptied if not.
    Replace,
}

/// Opens `path` for writing under the rules above; the bool says whether it was created.
pub fn open_output(path: &Path, how: Output) -> Result<(File, bool), ResultsError> {
    // Twice at most: a file created by someone else between the look and the creation is
    // then checked like any existing file.
    for _ in 0..2 {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut options = options(how);
                options.create_new(true);
                match options.open(path) {
                    Ok(file) => return Ok((file, true)),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io_err(path)(e)),
                }
            }
            Err(e) => return Err(io_err(path)(e)),
            Ok(seen) => {
                check(path, &seen, how)?;
                let mut options = options(how);
                no_follow(&mut options);
                let file = options.open(path).map_err(|e| {
                    if is_link_error(&e) {
                        refused(path, "it is a symbolic link".to_string())
                    } else {
                        io_err(path)(e)
                    }
                })?;
                // What counts is what was opened.
                let opened = file.metadata().map_err(io_err(path))?;
                check(path, &opened, how)?;
                if how == Output::Replace {
                    file.set_len(0).map_err(io_err(path))?;
                }
                return Ok((file, false));
            }
        }
    }
    Err(refused(path, "it keeps being replaced".into()))
}

/// Opens a results file to read it: a regular file (a link to one is followed), or `None` if
/// there is none.
pub fn open_input(path: &Path) -> Result<Option<File>, ResultsError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
        Ok(meta) if !meta.is_file() => return Err(refused(path, not_regular(&meta))),
        Ok(_) => {}
    }
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(refused(path, not_regular(&meta)));
    }
    Ok(Some(file))
}

fn options(how: Output) -> OpenOptions {
    let mut options = OpenOptions::new();
    match how {
        Output::Append => options.read(true).append(true),
        Output::Replace => options.write(true),
    };
    options
}

#[cfg(unix)]
fn no_follow(options: &mut OpenOptions) {
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
}

#[cfg(not(unix))]
fn no_follow(_: &mut OpenOptions) {}

#[cfg(unix)]
fn is_link_error(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

#[cfg(not(unix))]
fn is_link_error(_: &std::io::Error) -> bool {
    false
}

/// An existing file may be written: a regular file, not a link; and, run as root or to be
/// replaced, a file of the user synbatch runs as, with one name.
fn check(path: &Path, meta: &Metadata, how: Output) -> Result<(), ResultsError> {
    if !meta.file_type().is_file() {
        return Err(refused(path, not_regular(meta)));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let euid = euid();
        if euid == 0 || how == Output::Replace {
            if meta.uid() != euid {
                let why = if euid == 0 {
                    "root would write into another user's file"
                } else {
                    "a report replaces only a file of its own"
                };
                return Err(refused(
                    path,
                    format!(
                        "it belongs to user id {} and synbatch runs as user id {euid} ({why})",
                        meta.uid()
                    ),
                ));
            }
            if meta.nlink() > 1 {
                return Err(refused(
                    path,
                    format!(
                        "it has {} names (hard links), so it is also another file",
                        meta.nlink()
                    ),
                ));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = how;
    Ok(())
}

fn not_regular(meta: &Metadata) -> String {
    match describe(meta) {
        link @ "a symbolic link" => format!("it is {link}"),
        other => format!("it is {other}, not a regular file"),
    }
}

fn refused(path: &Path, why: String) -> ResultsError {
    ResultsError::Refused {
        path: path.to_path_buf(),
        why,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn new_file_is_created_existing_one_appended_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (mut f, created) = open_output(&path, Output::Append).unwrap();
        assert!(created);
        f.write_all(b"a\n").unwrap();
        drop(f);
        let (mut f, created) = open_output(&path, Output::Append).unwrap();
        assert!(!created);
        f.write_all(b"b\n").unwrap();
        let mut text = String::new();
        open_input(&path)
            .unwrap()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "a\nb\n");
        let (mut f, created) = open_output(&path, Output::Replace).unwrap();
        assert!(!created);
        f.write_all(b"c\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "c\n");
        assert!(open_input(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn links_are_refused_for_writing_and_their_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("r.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for how in [Output::Append, Output::Replace] {
            let err = open_output(&link, how).err().unwrap();
            assert!(err.to_string().contains("symbolic link"), "{err}");
            let err = open_output(&dangling, how).err().unwrap();
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
        assert!(
            !dir.path().join("nowhere").exists(),
            "a dangling link is not followed"
        );
        // Reading through a link to a regular file is fine.
        assert!(open_input(&link).unwrap().is_some());
    }

    #[test]
    fn devices_fifos_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        for path in [Path::new("/dev/null"), &fifo, dir.path()] {
            for how in [Output::Append, Output::Replace] {
                let err = open_output(path, how).err().unwrap();
                assert!(err.to_string().contains("not a regular file"), "{err}");
            }
            // Reading a fifo would block; it is refused before it is opened.
            let err = open_input(path).err().unwrap();
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn other_users_files_and_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, "").unwrap();
        let other = dir.path().join("other-name.csv");
        std::fs::hard_link(&path, &other).unwrap();
        // A report never replaces a file with another name.
        let err = open_output(&path, Output::Replace).err().unwrap();
        assert!(err.to_string().contains("hard links"), "{err}");
        let result = open_output(&path, Output::Append);
        if euid() == 0 {
            let err = result.err().unwrap();
            assert!(err.to_string().contains("hard links"), "{err}");
            // A file of another user (chown is possible as root).
            let theirs = dir.path().join("theirs.csv");
            std::fs::write(&theirs, "").unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
            for how in [Output::Append, Output::Replace] {
                let err = open_output(&theirs, how).err().unwrap();
                assert!(
                    err.to_string().contains("belongs to user id 65534"),
                    "{err}"
                );
            }
            assert_eq!(std::fs::metadata(&theirs).unwrap().len(), 0);
        } else {
            assert!(result.is_ok(), "not root: the permissions decide");
        }
    }
}
