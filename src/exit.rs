//! The one way the program ends other than success, and the exit code of each (design.md):
//! 1 some rows failed or were invalid, 2 bad usage or unreadable input, 3 the run was aborted
//! (token rejected, not an admin, server unreachable), 130 interrupted.

use std::fmt;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Exit {
    /// Some rows failed or were invalid; the run has said which and how to rerun them.
    #[error("some rows failed or were invalid")]
    RowsFailed,
    /// Bad options, configuration or input: nothing was sent, or the input broke off.
    #[error("{0}")]
    Usage(String),
    /// The server cannot be used for this job now.
    #[error("{0}")]
    Aborted(String),
    /// Ctrl-C or SIGTERM: the rows in flight were finished and recorded.
    #[error("interrupted")]
    Interrupted,
}

impl Exit {
    pub fn usage(message: impl fmt::Display) -> Exit {
        Exit::Usage(message.to_string())
    }

    pub fn aborted(message: impl fmt::Display) -> Exit {
        Exit::Aborted(message.to_string())
    }

    pub fn code(&self) -> u8 {
        match self {
            Exit::RowsFailed => 1,
            Exit::Usage(_) => 2,
            Exit::Aborted(_) => 3,
            Exit::Interrupted => 130,
        }
    }

    /// What to print on stderr, if the run has not said it already.
    pub fn message(&self) -> Option<&str> {
        match self {
            Exit::Usage(m) | Exit::Aborted(m) => Some(m),
            Exit::RowsFailed | Exit::Interrupted => None,
        }
    }
}

impl From<crate::input::InputError> for Exit {
    fn from(e: crate::input::InputError) -> Self {
        Exit::usage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_the_contract() {
        assert_eq!(Exit::RowsFailed.code(), 1);
        assert_eq!(Exit::usage("x").code(), 2);
        assert_eq!(Exit::aborted("x").code(), 3);
        assert_eq!(Exit::Interrupted.code(), 130);
        assert_eq!(Exit::usage("bad").message(), Some("bad"));
        assert_eq!(Exit::RowsFailed.message(), None);
    }
}
