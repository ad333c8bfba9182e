//! The jobs, one file each: its module doc (the endpoints, and the answers that matter on a
//! rerun), its help and examples, its `Args`, the columns it reads, and the job itself. A new
//! job adds its file here and one line to `cli.rs`.

pub mod create_rooms;
pub mod create_users;
pub mod deactivate;
pub mod delete_media;
pub mod delete_rooms;
pub mod diff_accounts;
pub mod export_users;
pub mod invite;
pub mod join;
pub mod kick;
pub mod notify;
pub mod purge_media;
pub mod remove_external_id;
pub mod report;
pub mod set_external_id;
pub mod sync_members;
