//! The token, kept out of everything synbatch prints or records, whatever its source: the
//! homeserver client takes it out of answers, and the writers of the results file, stdout and
//! stderr take it out once more at the edge (a token pasted into a spreadsheet cell would
//! otherwise come back in an `invalid` row's message).

use std::borrow::Cow;
use std::sync::OnceLock;

use crate::homeserver::Token;

static TOKEN: OnceLock<Token> = OnceLock::new();

/// Remembers the run's token, once it is read.
pub fn keep(token: &Token) {
    let _ = TOKEN.set(token.clone());
}

/// `text` with every occurrence of the token replaced.
pub fn redact(text: &str) -> Cow<'_, str> {
    match TOKEN.get() {
        Some(token) => token.redact(text),
        None => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_out_of_any_text() {
        keep(&Token::new("syt_secret_0123456789abcdef".into()));
        assert_eq!(
            redact("row 3: user `syt_secret_0123456789abcdef` is not a user id"),
            "row 3: user `<redacted>` is not a user id"
        );
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
