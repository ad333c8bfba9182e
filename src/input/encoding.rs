//! The text encoding of a CSV or JSON input, settled before the first row is read: UTF-8 (a BOM
//! or not), UTF-16 with a BOM (Excel's "Unicode text"), or the `--encoding` a person names.
//! Any other bytes stop the run before anything is sent: a Windows-1252 file read as UTF-8
//! would run its ASCII rows and leave the others invalid, half-applying the sheet.
//!
//! The check reads the whole file once, a buffer at a time (memory stays flat), then starts
//! again from the top. Stdin cannot be read twice, so it is first copied to an unnamed
//! temporary file and checked there.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use encoding_rs::{CoderResult, Decoder, Encoding, UTF_8, UTF_16BE, UTF_16LE};

use super::InputError;

const CHUNK: usize = 64 * 1024;

/// The input as UTF-8 text, whatever it was written in; a file that is neither UTF-8 nor
/// UTF-16 with a BOM, without `--encoding`, is refused with what to do about it.
pub fn text(
    name: &str,
    file: File,
    label: Option<&str>,
) -> Result<Box<dyn Read + Send>, InputError> {
    let io = |source| InputError::Io {
        name: name.to_string(),
        source,
    };
    let named = label.map(by_label).transpose()?;
    let mut file = BufReader::with_capacity(CHUNK, file);
    let start = file.fill_buf().map_err(io)?;
    let by_bom = if start.starts_with(b"\xff\xfe") {
        Some(UTF_16LE)
    } else if start.starts_with(b"\xfe\xff") {
        Some(UTF_16BE)
    } else {
        None
    };
    // A BOM is the file's own word on its encoding (as browsers take it), above `--encoding`.
    match by_bom.or(named).filter(|e| *e != UTF_8) {
        Some(encoding) => Ok(Box::new(Decoded::new(file, encoding.new_decoder()))),
        None => {
            if let Some(bad) = first_non_utf8(&mut file).map_err(io)? {
                return Err(InputError::Format {
                    name: name.to_string(),
                    message: bad.to_string(),
                });
            }
            let mut file = file.into_inner();
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            Ok(Box::new(file))
        }
    }
}

/// Stdin copied to an unnamed temporary file (on disk, not in memory), so that it can be
/// checked to its end and then read from the start like any file.
pub fn spool_stdin() -> Result<File, InputError> {
    let io = |source| InputError::Io {
        name: "<stdin>".to_string(),
        source,
    };
    let mut file = tempfile::tempfile().map_err(io)?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(file)
}

fn by_label(label: &str) -> Result<&'static Encoding, InputError> {
    Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
        InputError::usage(format!(
            "--encoding {label}: not an encoding name this tool knows (e.g. windows-1252, \
             iso-8859-15, utf-16le, shift_jis)"
        ))
    })
}

/// Where a file stops being UTF-8, and what it looks like instead.
#[derive(Debug, PartialEq)]
pub struct NotUtf8 {
    /// 1-based line of the first byte that is not UTF-8.
    pub line: u64,
    /// What the bytes look like: an `--encoding` label.
    pub guess: &'static str,
}

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let looks = match self.guess {
            "utf-16le" => "UTF-16 without a byte order mark",
            _ => "Windows-1252",
        };
        write!(
            f,
            "this file is not UTF-8 (line {} is not; it looks like {looks}): save it as \
             UTF-8 (in Excel: \"CSV UTF-8\"), or pass `--encoding {}`. Nothing was sent",
            self.line, self.guess
        )
    }
}

/// Reads `input` to its end; the first place it is not UTF-8, if any.
fn first_non_utf8(input: &mut impl BufRead) -> std::io::Result<Option<NotUtf8>> {
    // Bytes of a character cut by the end of the previous buffer.
    let mut carry: Vec<u8> = Vec::with_capacity(4);
    let mut line = 1u64;
    let mut bad_line = None;
    let (mut zeros_even, mut zeros_odd, mut seen) = (0u64, 0u64, 0u64);
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        // Counted over the first buffer only: UTF-16 without a BOM has a zero in every other
        // byte of ASCII text.
        if seen == 0 {
            for (i, b) in buf.iter().enumerate() {
                if *b == 0 {
                    if i % 2 == 0 {
                        zeros_even += 1;
                    } else {
                        zeros_odd += 1;
                    }
                }
            }
        }
        seen += buf.len() as u64;
        let n = buf.len();
        let mut chunk = std::mem::take(&mut carry);
        chunk.extend_from_slice(buf);
        input.consume(n);
        let valid = match std::str::from_utf8(&chunk) {
            Ok(_) => chunk.len(),
            Err(e) if e.error_len().is_none() => {
                carry = chunk[e.valid_up_to()..].to_vec();
                e.valid_up_to()
            }
            Err(e) => {
                line += count_lines(&chunk[..e.valid_up_to()]);
                bad_line = Some(line);
                break;
            }
        };
        line += count_lines(&chunk[..valid]);
    }
    if bad_line.is_none() && !carry.is_empty() {
        bad_line = Some(line);
    }
    Ok(bad_line.map(|line| NotUtf8 {
        line,
        guess: if zeros_odd > 2 * zeros_even.max(1) {
            "utf-16le"
        } else {
            "windows-1252"
        },
    }))
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|b| **b == b'\n').count() as u64
}

/// A reader of UTF-8 text decoded from another encoding (malformed sequences become U+FFFD).
struct Decoded<R> {
    inner: R,
    decoder: Decoder,
    out: Vec<u8>,
    out_at: usize,
    out_end: usize,
    done: bool,
}

impl<R: BufRead> Decoded<R> {
    fn new(inner: R, decoder: Decoder) -> Self {
        Decoded {
            inner,
            decoder,
            out: vec![0; 3 * CHUNK + 16],
            out_at: 0,
            out_end: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.out_at < self.out_end {
                let n = buf.len().min(self.out_end - self.out_at);
                buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
                self.out_at += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let input = self.inner.fill_buf()?;
            let last = input.is_empty();
            let (result, read, written, _) =
                self.decoder.decode_to_utf8(input, &mut self.out, last);
            self.inner.consume(read);
            self.out_at = 0;
            self.out_end = written;
            if last && result == CoderResult::InputEmpty {
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f
    }

    fn read(bytes: &[u8], label: Option<&str>) -> Result<String, InputError> {
        let mut out = String::new();
        text("t.csv", file(bytes), label)?
            .read_to_string(&mut out)
            .unwrap();
        Ok(out)
    }

    fn utf16le(text: &str) -> Vec<u8> {
        let mut out = vec![0xff, 0xfe];
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    #[test]
    fn utf8_with_or_without_bom_passes_as_is() {
        assert_eq!(
            read("user\nJosé\n".as_bytes(), None).unwrap(),
            "user\nJosé\n"
        );
        assert_eq!(
            read(b"\xef\xbb\xbfuser\n", None).unwrap(),
            "\u{feff}user\n",
            "the CSV reader drops the UTF-8 BOM itself"
        );
    }

    #[test]
    fn utf16_by_its_bom_either_byte_order() {
        assert_eq!(
            read(&utf16le("user\troom\nJosé\t#r\n"), None).unwrap(),
            "user\troom\nJosé\t#r\n"
        );
        let mut be = vec![0xfe, 0xff];
        be.extend("Müller".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(read(&be, None).unwrap(), "Müller");
    }

    #[test]
    fn windows_1252_is_refused_unless_named() {
        let bytes = b"user,displayname\njose,Jos\xe9 M\xfcller\n";
        let err = read(bytes, None).unwrap_err().to_string();
        assert!(err.contains("not UTF-8 (line 2"), "{err}");
        assert!(err.contains("Windows-1252"), "{err}");
        assert!(err.contains("--encoding windows-1252"), "{err}");
        assert_eq!(
            read(bytes, Some("windows-1252")).unwrap(),
            "user,displayname\njose,José Müller\n"
        );
        assert!(read(bytes, Some("klingon")).is_err());
    }

    #[test]
    fn a_bad_byte_far_past_the_first_buffer_is_found() {
        let mut bytes = b"user\n".to_vec();
        for i in 0..20_000 {
            bytes.extend(format!("user{i}é\n").as_bytes());
        }
        bytes.extend(b"jos\xe9\n");
        let err = read(&bytes, None).unwrap_err().to_string();
        assert!(err.contains("line 20002"), "{err}");
    }

    #[test]
    fn characters_cut_by_a_buffer_end_are_fine_a_cut_file_end_is_not() {
        // `é` is two bytes; put one on every offset around the 64 KiB boundary.
        for pad in CHUNK - 3..CHUNK + 1 {
            let mut bytes = vec![b'a'; pad];
            bytes.extend("é\n".as_bytes());
            assert!(read(&bytes, None).is_ok(), "pad {pad}");
        }
        assert!(read(b"user\n\xc3", None).is_err());
    }

    #[test]
    fn utf16_without_bom_is_named_as_such() {
        let bytes: Vec<u8> = "user\nJosé\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        // Valid UTF-8 (ASCII and NULs) until `é`.
        let err = read(&bytes, None).unwrap_err().to_string();
        assert!(err.contains("--encoding utf-16le"), "{err}");
    }
}
