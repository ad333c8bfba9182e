//! Destructive jobs ask before they start: on a terminal, a yes/no question; anywhere else
//! (cron, a pipe, CI) they refuse unless `--yes` says the question was answered in advance.

use std::io::{BufRead, IsTerminal, Write};

/// `what` says what is about to happen, e.g. "deactivate the accounts in leavers.csv on
/// https://matrix.example.org".
pub fn confirm(what: &str, yes: bool) -> Result<(), String> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() || !std::io::stderr().is_terminal() {
        return Err(format!(
            "about to {what}, which cannot be undone, and there is no terminal to confirm on: \
             pass --yes to go ahead (or --dry-run to see the plan first)"
        ));
    }
    eprint!("About to {what}. This cannot be undone. Continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err("not confirmed: nothing was done".into()),
    }
}
