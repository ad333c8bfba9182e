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

/// `text` as it may go to a terminal or a log: the token taken out, and control characters
/// (ESC, NUL, C1: from a cell or a server's error text) shown escaped, `\u{1b}`, so that no
/// input can move the cursor, recolour or clear the screen. Newlines and tabs stay.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    let text = redact(text);
    if !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() && !matches!(c, '\n' | '\t') {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            for_terminal("M_UNKNOWN: \u{1b}[2Jgone\u{0}\r\u{9b}x\nnext\tcol"),
            "M_UNKNOWN: \\u{1b}[2Jgone\\u{0}\\u{d}\\u{9b}x\nnext\tcol"
        );
        assert!(matches!(for_terminal("plain"), Cow::Borrowed(_)));
    }

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
