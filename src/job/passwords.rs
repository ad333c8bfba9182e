//! `create-users --generate-passwords FILE`: strong random passwords, and the file that hands
//! them to the admin. The file is created with mode 0600 and is the only place a password is
//! ever written: never the results file, never the terminal.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// 24 characters from 62: about 143 bits, from the operating system's secure random source.
const LENGTH: usize = 24;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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
    out: Mutex<csv::Writer<BufWriter<File>>>,
}

impl PasswordFile {
    /// Creates the file (mode 0600) or appends to one only its owner can read.
    pub fn open(path: &Path) -> Result<PasswordFile, String> {
        let name = path.display();
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .map_err(|e| format!("--generate-passwords {name}: cannot open it: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("--generate-passwords {name}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "--generate-passwords {name}: the file can be read by others (mode {:o}); \
                     passwords go only to a file its owner alone can read (chmod 600 it, or \
                     name a new file)",
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        let mut out = csv::Writer::from_writer(BufWriter::new(file));
        if meta.len() == 0 {
            out.write_record(["user", "password"])
                .and_then(|()| out.flush().map_err(csv::Error::from))
                .map_err(|e| format!("--generate-passwords {name}: {e}"))?;
        }
        Ok(PasswordFile {
            path: path.to_path_buf(),
            out: Mutex::new(out),
        })
    }

    /// Records an account's password, handed to the OS before the row is reported done (a
    /// killed run loses none). The disk sync comes at the end: one per account would stall
    /// the run on a slow disk.
    pub fn record(&self, user_id: &str, password: &str) -> Result<(), String> {
        let mut out = self.out.lock().unwrap();
        out.write_record([user_id, password])
            .and_then(|()| out.flush().map_err(csv::Error::from))
            .map_err(|e| {
                format!(
                    "cannot write the password of {user_id} to {}: {e}",
                    self.path.display()
                )
            })
    }
}

impl Drop for PasswordFile {
    fn drop(&mut self) {
        if let Ok(out) = self.out.get_mut() {
            let _ = out.flush();
            let _ = out.get_ref().get_ref().sync_data();
        }
    }
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
}
