//! `create-users --generate-passwords FILE`: strong random passwords, and the file that hands
//! them to the admin. The file is the only place a password is ever written: never the results
//! file, never the terminal.
//!
//! The file is created new (`O_EXCL`, mode 0600, never through a symbolic link). An existing
//! one is appended to only if it is a regular file (not a symbolic link, a device or a pipe)
//! with no other hard link, owned by the user synbatch runs as, that no one else can read, and
//! whose first line is the `user,password` header: a typo cannot send passwords into another
//! user's file, or onto the end of a key. A run holds the file locked, so two runs never write
//! it at once.
//!
//! A password line is written before the PUT that sets it, with one write; a write that fails
//! (a full disk) is cut back off, so the file never keeps half a line, and the row fails with
//! no PUT sent. A file that ends in half a line all the same (a crash, an older synbatch) has it
//! cut off when it is opened, and stderr names its user: no PUT follows a failed write, so that
//! account was not made with that password. The lines already in the file are known to the run:
//! a row for an account that has one sets that password and writes no new line (its PUT failed
//! in an earlier run, and `--retry-failed` or `--resume` runs it again). Of two lines for one
//! user, the last counts: a line is only written while the account does not exist.

use std::collections::HashMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::file_kind::{describe, euid};

/// 24 characters from 62: about 143 bits, from the operating system's secure random source.
const LENGTH: usize = 24;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The first line of every passwords file.
const HEADER: &str = "user,password";

/// Users named at most in one warning.
const NAMED: usize = 10;

pub fn generate() -> String {
    let mut password = String::with_capacity(LENGTH);
    let mut bytes = [0u8; 64];
    while password.len() < LENGTH {
        getrandom::fill(&mut bytes).expect("the operating system's random source works");
        // Rejection sampling keeps every character equally likely (248 = 4 * 62).
        for b in bytes.iter().filter(|b| **b < 248) {
            if password.len() == LENGTH {
                break;
            }
            password.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    password
}

pub struct PasswordFile {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    out: File,
    /// The file's length: where a failed write is cut back to. The lock makes this run the
    /// only writer, so it is known without asking.
    len: u64,
    /// user -> password: the file's lines (the last of a user's counts), then this run's.
    known: HashMap<String, String>,
}

impl PasswordFile {
    /// Creates the file (mode 0600), or opens one that is safe to append to; cuts off a torn
    /// last line and reads the passwords already handed out.
    pub fn open(path: &Path) -> Result<PasswordFile, String> {
        let name = path.display();
        let fail = |what: String| format!("--generate-passwords {name}: {what}");
        let mut file = match create_new(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => open_existing(path).map_err(fail)?,
            Err(e) => return Err(fail(format!("cannot create it: {e}"))),
        };
        file.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                fail("another synbatch run is writing to it; wait for it to end".into())
            }
            std::fs::TryLockError::Error(e) => fail(format!("cannot lock it: {e}")),
        })?;
        let mut bytes = vec![];
        file.read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read it: {e}")))?;
        let contents = Contents::parse(&bytes).map_err(fail)?;
        let mut len = bytes.len() as u64;
        if contents.whole < len {
            file.set_len(contents.whole)
                .map_err(|e| fail(format!("cannot cut off its half line: {e}")))?;
            len = contents.whole;
        }
        for warning in contents.warnings() {
            eprintln!("synbatch: --generate-passwords {name}: {warning}");
        }
        if len == 0 {
            append(&mut file, &mut len, format!("{HEADER}\n").as_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        Ok(PasswordFile {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                out: file,
                len,
                known: contents.known,
            }),
        })
    }

    /// The password the file holds for this account: set it rather than a new one.
    pub fn password_for(&self, user_id: &str) -> Option<String> {
        self.inner.lock().unwrap().known.get(user_id).cloned()
    }

    /// Records an account's password, handed to the OS before the row goes on (a killed run
    /// loses none); a password the file holds already for that user is not written again. On
    /// an error nothing of the line stays in the file. The disk sync comes at the end: one per
    /// account would stall the run on a slow disk.
    pub fn record(&self, user_id: &str, password: &str) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap();
        if inner
            .known
            .get(user_id)
            .is_some_and(|known| known == password)
        {
            return Ok(());
        }
        let Inner { out, len, known } = &mut *inner;
        append(out, len, &line(user_id, password)).map_err(|e| {
            format!(
                "cannot write the password of {user_id} to {}: {e}",
                self.path.display()
            )
        })?;
        known.insert(user_id.to_string(), password.to_string());
        Ok(())
    }
}

impl Drop for PasswordFile {
    fn drop(&mut self) {
        if let Ok(inner) = self.inner.get_mut() {
            let _ = inner.out.sync_data();
        }
    }
}

/// `user,password\n`, quoted as CSV needs.
fn line(user_id: &str, password: &str) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(vec![]);
    out.write_record([user_id, password])
        .expect("a CSV record is written to memory");
    out.into_inner().expect("a CSV record is written to memory")
}

/// Where password lines go: the file, or in the tests one that fails.
trait Lines: Write {
    /// Cuts the file back to `len` bytes.
    fn cut(&mut self, len: u64) -> io::Result<()>;
}

impl Lines for File {
    fn cut(&mut self, len: u64) -> io::Result<()> {
        // The file is opened to append: the next write goes to the new end.
        self.set_len(len)
    }
}

/// Appends one whole line with one write; if any of it fails, cuts the file back to `len`, so
/// that no half line is left for the next line to be glued to.
fn append(out: &mut impl Lines, len: &mut u64, line: &[u8]) -> io::Result<()> {
    match out.write_all(line) {
        Ok(()) => {
            *len += line.len() as u64;
            Ok(())
        }
        Err(e) => match out.cut(*len) {
            Ok(()) => Err(e),
            Err(cut) => Err(io::Error::new(
                e.kind(),
                format!(
                    "{e}; and the part written could not be cut off ({cut}): the next run cuts it"
                ),
            )),
        },
    }
}

/// A new file, mode 0600. `O_EXCL` fails on anything already there, a symbolic link too.
fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// An existing file, opened only if it is safe to append passwords to.
fn open_existing(path: &Path) -> Result<File, String> {
    // Looked at first without opening it: opening a device can do things.
    let seen = std::fs::symlink_metadata(path).map_err(|e| format!("cannot open it: {e}"))?;
    check_existing(&seen, euid())?;
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Replaced by a link since it was looked at: ELOOP.
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options
        .open(path)
        .map_err(|e| format!("cannot open it: {e}"))?;
    // What counts is what was opened.
    let opened = file
        .metadata()
        .map_err(|e| format!("cannot open it: {e}"))?;
    check_existing(&opened, euid())?;
    Ok(file)
}

/// Why an existing file must not receive passwords, if it must not.
fn check_existing(meta: &Metadata, euid: u32) -> Result<(), String> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(
            "it is a symbolic link; passwords go only to a file named directly \
                    (name the file it points to, or a new file)"
                .into(),
        );
    }
    if !kind.is_file() {
        return Err(format!(
            "it is {}, not a regular file; name a new file",
            describe(meta)
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != euid {
            return Err(format!(
                "it belongs to another user (uid {}, synbatch runs as {euid}); passwords go \
                 only to a file of the user synbatch runs as: name a new file",
                meta.uid()
            ));
        }
        if meta.nlink() != 1 {
            return Err(format!(
                "it has {} hard links: it is also another file; name a new file",
                meta.nlink()
            ));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the file can be read by others (mode {mode:o}); passwords go only to a file \
                 its owner alone can read (chmod 600 it, or name a new file)"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = euid;
    Ok(())
}

/// What an existing file holds.
#[derive(Debug, Default)]
struct Contents {
    /// The length of its whole lines: what stays.
    whole: u64,
    /// The half line after them, cut off.
    torn: Option<Torn>,
    known: HashMap<String, String>,
    /// Users with more than one line.
    repeated: Vec<String>,
    /// Numbers of the lines that are not `user,password`.
    bad: Vec<u64>,
}

#[derive(Debug, PartialEq)]
enum Torn {
    /// The header itself.
    Header,
    /// A line for this user (its password cut short, or only its newline missing).
    User(String),
    /// A line cut inside its user id, which begins so.
    Partial(String),
}

impl Contents {
    fn parse(bytes: &[u8]) -> Result<Contents, String> {
        let whole = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(at) => at + 1,
            None => 0,
        };
        let mut contents = Contents {
            whole: whole as u64,
            ..Contents::default()
        };
        let tail = &bytes[whole..];
        if whole == 0 {
            // Not one whole line: empty, or a header cut short; anything else is not ours.
            if format!("{HEADER}\n").as_bytes().starts_with(tail) {
                if !tail.is_empty() {
                    contents.torn = Some(Torn::Header);
                }
                return Ok(contents);
            }
            return Err(not_ours());
        }
        let first = &bytes[..bytes.iter().position(|b| *b == b'\n').unwrap_or(0)];
        if first.strip_suffix(b"\r").unwrap_or(first) != HEADER.as_bytes() {
            return Err(not_ours());
        }
        if !tail.is_empty() {
            contents.torn = Some(torn_user(tail));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(&bytes[..whole]);
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    contents.bad.push(e.position().map_or(0, |p| p.line()));
                    continue;
                }
            }
            let pair = match (record.len(), record.get(0), record.get(1)) {
                (2, Some(user), Some(password)) if !user.is_empty() && !password.is_empty() => {
                    std::str::from_utf8(user)
                        .ok()
                        .zip(std::str::from_utf8(password).ok())
                }
                _ => None,
            };
            let Some((user, password)) = pair else {
                contents.bad.push(record.position().map_or(0, |p| p.line()));
                continue;
            };
            let before = contents.known.insert(user.into(), password.into());
            if before.is_some() && !contents.repeated.iter().any(|u| u == user) {
                contents.repeated.push(user.into());
            }
        }
        Ok(contents)
    }

    /// What to say about the file on stderr; never a password.
    fn warnings(&self) -> Vec<String> {
        let mut out = vec![];
        let whose = match &self.torn {
            None => None,
            Some(Torn::Header) => {
                out.push("it ended in half a header line; it is written again".into());
                None
            }
            Some(Torn::User(user)) => Some(format!("for {user}")),
            Some(Torn::Partial(start)) => Some(format!("for a user id beginning `{start}`")),
        };
        if let Some(whose) = whose {
            out.push(format!(
                "it ended in half a line (a write that failed, on a full disk?), {whose}: the \
                 line is cut off. synbatch sends no PUT after a failed write, so that account \
                 was not made with it; its row gets a new password when it runs again"
            ));
        }
        if !self.repeated.is_empty() {
            out.push(format!(
                "{} users have more than one line (an earlier synbatch wrote a new password when \
                 a row ran again); the last line of each is the one that counts, and is reused: \
                 {}",
                self.repeated.len(),
                named(&self.repeated)
            ));
        }
        if !self.bad.is_empty() {
            let lines: Vec<String> = self.bad.iter().map(u64::to_string).collect();
            out.push(format!(
                "line {} not `user,password` (two lines glued together by an earlier failed \
                 write?): left as it is, and no password is taken from it; check it by hand",
                if lines.len() == 1 {
                    format!("{} is", lines[0])
                } else {
                    format!("s {} are", named(&lines))
                }
            ));
        }
        out
    }
}

fn not_ours() -> String {
    format!(
        "its first line is not `{HEADER}`: it is not a passwords file of synbatch, and nothing is \
         added to it; name a new file"
    )
}

/// Whose line a torn tail was: its first field, if the password had begun (never the
/// password's part).
fn torn_user(tail: &[u8]) -> Torn {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(tail);
    let mut record = csv::ByteRecord::new();
    let first = match reader.read_byte_record(&mut record) {
        Ok(true) => record
            .get(0)
            .map(|f| String::from_utf8_lossy(f).into_owned()),
        _ => None,
    };
    match first {
        Some(user) if record.len() >= 2 => Torn::User(user),
        Some(start) => Torn::Partial(start),
        None => Torn::Partial(String::new()),
    }
}

/// `a, b, c and 7 more`.
fn named(items: &[String]) -> String {
    let mut text = items
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > NAMED {
        text.push_str(&format!(" and {} more", items.len() - NAMED));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_different() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), LENGTH);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a, b);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_and_refused_when_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw.csv");
        let file = PasswordFile::open(&path).unwrap();
        file.record("@a:x", "secret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "user,password\n@a:x,secret\n"
        );

        let open = dir.path().join("open.csv");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            PasswordFile::open(&open)
                .err()
                .unwrap()
                .contains("read by others")
        );
    }

    /// A file of `content`, mode 0600.
    #[cfg(unix)]
    fn private(dir: &Path, name: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[cfg(unix)]
    #[test]
    fn links_pipes_other_files_and_files_in_use_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = private(dir.path(), "target.csv", "user,password\n@a:x,old\n");
        let refused = |path: &Path, why: &str| {
            let e = PasswordFile::open(path).err().expect("refused");
            assert!(e.contains(why), "{e}");
            assert_eq!(
                std::fs::read_to_string(&target).unwrap(),
                "user,password\n@a:x,old\n"
            );
        };
        // A link to a private passwords file of ours, even so.
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        refused(&link, "symbolic link");
        // A dangling one is not created through.
        let dangling = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink(dir.path().join("nowhere.csv"), &dangling).unwrap();
        refused(&dangling, "symbolic link");
        assert!(!dir.path().join("nowhere.csv").exists());
        // A second name of the file.
        let hard = dir.path().join("hard.csv");
        std::fs::hard_link(&target, &hard).unwrap();
        refused(&hard, "hard links");
        std::fs::remove_file(&hard).unwrap();
        // A directory, a named pipe.
        refused(dir.path(), "a directory");
        let fifo = dir.path().join("fifo.csv");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string and mode.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        refused(&fifo, "a named pipe");
        // A private file of ours that is not a passwords file (a key, say) gets nothing.
        let key = private(dir.path(), "id_key", "-----BEGIN KEY-----\nabc\n");
        let e = PasswordFile::open(&key).err().unwrap();
        assert!(e.contains("not a passwords file"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&key).unwrap(),
            "-----BEGIN KEY-----\nabc\n"
        );
        // One with no newline at all is not cut either.
        let short = private(dir.path(), "short", "abc");
        assert!(PasswordFile::open(&short).is_err());
        assert_eq!(std::fs::read_to_string(&short).unwrap(), "abc");
        // And the file itself, while a run holds it.
        let held = PasswordFile::open(&target).unwrap();
        refused(&target, "another synbatch run");
        drop(held);
        assert!(PasswordFile::open(&target).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(dir.path(), "pw.csv", "user,password\n");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(check_existing(&meta, euid()), Ok(()));
        let e = check_existing(&meta, euid() + 1).unwrap_err();
        assert!(e.contains("belongs to another user"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_torn_last_line_is_cut_and_the_lines_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let path = private(
            dir.path(),
            "pw.csv",
            "user,password\n@a:x,first\n@b:x,bee\n@a:x,second\n@c:x,HALFPA",
        );
        let file = PasswordFile::open(&path).unwrap();
        assert_eq!(file.password_for("@a:x").as_deref(), Some("second"));
        assert_eq!(file.password_for("@b:x").as_deref(), Some("bee"));
        assert_eq!(
            file.password_for("@c:x"),
            None,
            "a torn line is no password"
        );
        // A known password is not written twice; a new one is, after the cut.
        file.record("@b:x", "bee").unwrap();
        file.record("@c:x", "new").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "user,password\n@a:x,first\n@b:x,bee\n@a:x,second\n@c:x,new\n"
        );
        // A header cut short is written again whole.
        let torn_header = private(dir.path(), "h.csv", "user,pa");
        PasswordFile::open(&torn_header)
            .unwrap()
            .record("@a:x", "p")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&torn_header).unwrap(),
            "user,password\n@a:x,p\n"
        );
    }

    #[test]
    fn what_is_said_about_a_file_names_users_never_passwords() {
        let parse = |text: &str| Contents::parse(text.as_bytes()).unwrap();
        let c = parse("user,password\n@a:x,PW1\n@a:x,PW2\n@a:x,PW3@b:x,PW4\n@c:x,HALF");
        assert_eq!(c.whole, 49);
        assert_eq!(c.torn, Some(Torn::User("@c:x".into())));
        assert_eq!(c.repeated, ["@a:x"]);
        assert_eq!(c.bad, [4], "the glued line");
        assert_eq!(c.known["@a:x"], "PW2");
        let said = c.warnings().join("\n");
        assert!(said.contains("for @c:x") && said.contains("@a:x"), "{said}");
        assert!(said.contains("line 4 is not"), "{said}");
        for secret in ["PW", "HALF"] {
            assert!(!said.contains(secret), "{said}");
        }
        // Cut inside the user id: its beginning.
        let c = parse("user,password\n@long-na");
        assert_eq!(c.torn, Some(Torn::Partial("@long-na".into())));
        assert!(c.warnings()[0].contains("beginning `@long-na`"));
        // Only the newline missing: cut all the same (whether the write ended there is not known).
        let c = parse("user,password\n@d:x,WHOLEPASSWORD");
        assert_eq!(c.whole, 14);
        assert!(!c.warnings()[0].contains("WHOLE"));
        // Quoted fields, and a CRLF header.
        let c = parse("user,password\r\n\"@e,odd:x\",\"p,w\"\r\n");
        assert_eq!(c.known["@e,odd:x"], "p,w");
        assert!(c.warnings().is_empty());
    }

    /// Takes `room` bytes, then fails as a full disk does; `cut` records what it was cut to.
    struct FullDisk {
        data: Vec<u8>,
        room: usize,
        cut_fails: bool,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let free = self.room.saturating_sub(self.data.len());
            if free == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = free.min(buf.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines for FullDisk {
        fn cut(&mut self, len: u64) -> io::Result<()> {
            if self.cut_fails {
                return Err(io::Error::other("read-only"));
            }
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_write_that_fails_leaves_no_half_line() {
        let mut out = FullDisk {
            data: b"user,password\n".to_vec(),
            room: 21,
            cut_fails: false,
        };
        let mut len = 14;
        append(&mut out, &mut len, b"@a:x,p\n").unwrap();
        assert_eq!(
            (len, out.data.as_slice()),
            (21, &b"user,password\n@a:x,p\n"[..])
        );
        out.room = 30;
        let e = append(&mut out, &mut len, &line("@b:x", "a-long-password")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        assert_eq!(len, 21);
        assert_eq!(
            out.data, b"user,password\n@a:x,p\n",
            "the half line is cut off"
        );
        // Room again: the next line starts on a line of its own.
        out.room = 100;
        append(&mut out, &mut len, b"@c:x,q\n").unwrap();
        assert_eq!(out.data, b"user,password\n@a:x,p\n@c:x,q\n");
        // If even the cut fails, the error says so (and the next open cuts it).
        out.room = 30;
        out.cut_fails = true;
        let e = append(&mut out, &mut len, b"@d:x,a-long-password\n").unwrap_err();
        assert!(e.to_string().contains("could not be cut off"), "{e}");
    }
}
