//! `sync-members`: the sheet of who belongs where, each room's plan against its state, the plan
//! file, and the job that applies it.

pub mod apply;
pub mod plan;
pub mod plan_file;
pub mod reads;
pub mod sheet;
