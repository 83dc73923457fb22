//! Plain domain rules with no I/O: ids, times, tokens and passwords, operations, permissions,
//! and the decision whether a session authenticates its holder.

pub mod auth;
pub mod ejson;
pub mod ids;
pub mod operation;
pub mod permission;
pub mod secrets;
pub mod time;
pub mod user;
