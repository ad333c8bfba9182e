//! What goes to the results writer: a row's final line, or a pending line that the writer
//! acknowledges once it is in the file, so that no change is sent before its intent is recorded.

use tokio::sync::oneshot;

use super::ResultLine;

#[derive(Debug)]
pub enum Record {
    Final(ResultLine),
    Pending(ResultLine, oneshot::Sender<()>),
}
