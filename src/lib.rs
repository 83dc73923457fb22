//! importops: a standalone server for Rocket.Chat's import-operations API.
//!
//! `main.rs` only parses the command line; everything else lives here so that tests use it
//! directly. See ARCHITECTURE.md for a map of the modules.

pub mod access;
pub mod accounts;
pub mod batch;
pub mod cache;
pub mod cli;
pub mod config;
pub mod connections;
pub mod ddp;
pub mod domain;
pub mod feed;
pub mod hashing;
pub mod http;
pub mod importer;
pub mod rocketchat;
pub mod server;
pub mod store;
pub mod telemetry;

pub use config::Settings;
pub use store::Store;
