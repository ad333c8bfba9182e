//! Where finished rows go, and the only writer to stdout of a row job: the results file for a
//! run; for `--dry-run` the requests that would be sent; for `--check` the rows that would
//! fail and what the others would change. With `--summary-json -` stdout holds the summary
//! alone, and those lines go to stderr.

use std::io::Write;

use crate::results::{ResultLine, ResultsError, ResultsWriter, Status};

/// Requests a dry run shows before it only counts them; invalid rows are shown more generously.
const SHOWN_REQUESTS: u64 = 20;
const SHOWN_INVALID: u64 = 100;

pub enum Sink {
    Results(Box<ResultsWriter>),
    DryRun {
        requests: u64,
        invalid: u64,
        to_stderr: bool,
    },
    Check {
        to_stderr: bool,
    },
}

impl Sink {
    pub fn write(&mut self, line: &ResultLine) -> Result<(), ResultsError> {
        let text = match self {
            Sink::Results(writer) => return writer.write(line),
            Sink::DryRun {
                requests, invalid, ..
            } => match line.status {
                Status::Invalid => {
                    *invalid += 1;
                    (*invalid <= SHOWN_INVALID)
                        .then(|| format!("row {}: invalid: {}", line.row, line.message))
                }
                _ => {
                    *requests += 1;
                    (*requests <= SHOWN_REQUESTS)
                        .then(|| format!("row {}: {}", line.row, line.message))
                }
            },
            Sink::Check { .. } => match line.status {
                Status::Invalid => Some(format!(
                    "row {}: invalid: {}: {}",
                    line.row, line.key, line.message
                )),
                Status::Failed => Some(format!(
                    "row {}: would fail: {}: {}",
                    line.row, line.key, line.message
                )),
                _ if !line.message.is_empty() => {
                    Some(format!("row {}: {}", line.row, line.message))
                }
                _ => None,
            },
        };
        if let Some(text) = text {
            self.say(&text);
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), ResultsError> {
        match self {
            Sink::Results(writer) => writer.flush(),
            _ => Ok(()),
        }
    }

    /// The end of the run: the file synced, or what a dry run left unshown counted.
    pub fn finish(&mut self) -> Result<(), ResultsError> {
        match self {
            Sink::Results(writer) => writer.sync(),
            Sink::DryRun {
                requests, invalid, ..
            } => {
                let more = [
                    (*requests, SHOWN_REQUESTS, "requests"),
                    (*invalid, SHOWN_INVALID, "invalid rows"),
                ];
                for (n, shown, what) in more {
                    if n > shown {
                        self.say(&format!("... and {} more {what}", n - shown));
                    }
                }
                Ok(())
            }
            Sink::Check { .. } => Ok(()),
        }
    }

    /// One line on stdout (stderr when the summary has stdout), control characters escaped;
    /// a closed pipe (`| head`) is not an error worth stopping for.
    fn say(&self, text: &str) {
        let text = crate::secret::for_terminal(text);
        let _ = match self {
            Sink::DryRun {
                to_stderr: true, ..
            }
            | Sink::Check { to_stderr: true } => writeln!(std::io::stderr().lock(), "{text}"),
            _ => writeln!(std::io::stdout().lock(), "{text}"),
        };
    }
}
