//! One integration-test binary: the CLI without a server, fault injection against mock servers,
//! and a real Synapse (started once per profile by tests/synapse/harness.py and shared by every
//! test here).

mod common;

mod account_list;
mod chaos_proxy;
mod cli;
mod faults;
#[cfg(unix)]
mod files;
mod hostile;
mod lost_answers;
#[cfg(unix)]
mod results_file;
mod scheduling;
mod summary_json;
mod synapse_annotate;
mod synapse_chaos;
mod synapse_export;
mod synapse_invite;
mod synapse_join;
mod synapse_kill;
mod synapse_lift;
mod synapse_mas;
mod synapse_media;
mod synapse_notify;
mod synapse_onboarding;
mod synapse_rooms;
mod synapse_spreadsheets;
mod synapse_sso;
mod synapse_sync;
mod workbooks;
