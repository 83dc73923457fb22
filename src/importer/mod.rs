//! Rocket.Chat's import workflow: the importers that read an archive into staged records, and
//! the errors the workflow answers (docs/compatibility.md section 11).
//!
//! An importer parses on a blocking thread and hands what it finds, in order, to a [`Sink`]:
//! progress steps, count updates and staged records shaped as Rocket.Chat's `IImportUser`,
//! `IImportChannel`, `IImportMessage` and `IImportContact`. The workflow behind the sink writes
//! them to the staging tables in batches; an importer never holds an archive's content in memory.

use std::path::Path;

pub mod archive;
pub mod csv;
pub mod fetch;
pub mod files;
pub mod import_users;
pub mod js;
pub mod slack;
pub mod slack_users;
pub mod workflow;

/// An error of the import workflow, in the two shapes Rocket.Chat's routes and methods answer.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// `Meteor.Error(code, reason, details)`: over REST a 400
    /// `{"success":false,"error":"<reason> [<code>]","errorType":"<code>","details":"<details>"}`.
    #[error("{reason} [{code}]")]
    Meteor {
        code: String,
        reason: String,
        details: String,
    },
    /// A plain `Error(message)`: over REST a 400 `{"success":false,"error":"<message>"}`.
    #[error("{0}")]
    Plain(String),
    /// The database failed; answered as every other store error (503 or 500).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl ImportError {
    pub fn meteor(code: &str, reason: impl Into<String>, details: &str) -> Self {
        ImportError::Meteor {
            code: code.to_owned(),
            reason: reason.into(),
            details: details.to_owned(),
        }
    }

    pub fn plain(message: impl Into<String>) -> Self {
        ImportError::Plain(message.into())
    }
}

/// The kind of a staged record (`dataType` in Rocket.Chat's `rocketchat_import_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    User,
    Channel,
    Message,
    Contact,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::User => "user",
            DataType::Channel => "channel",
            DataType::Message => "message",
            DataType::Contact => "contact",
        }
    }
}

/// A change to the operation's counts, as the importers' `$set` / `$inc` write them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Added to `count.total`.
    pub add_total: u64,
    /// Set when `Some`.
    pub users: Option<u64>,
    pub channels: Option<u64>,
    pub messages: Option<u64>,
    pub contacts: Option<u64>,
    /// `messagesstatus`: set when `Some` (`Some(None)` writes `null`).
    pub messages_status: Option<Option<String>>,
}

/// What an importer reports while it prepares a file, in the order it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// The operation's `status` becomes this `importer_*` step.
    Step(&'static str),
    /// The counts change.
    Counts(Counts),
    /// One staged record: Rocket.Chat's `IImport*` document of that kind (`importIds`, ...).
    Record(DataType, serde_json::Value),
}

/// Where an importer sends what it prepares. An error stops the importer, which returns it.
pub trait Sink {
    fn send(&mut self, item: Prepared) -> Result<(), ImportError>;
}

/// The bounds an importer keeps, from the server's settings.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--import-max-bytes`: the most an archive's entries may hold once uncompressed, in all.
    pub max_bytes: u64,
}

/// Parses the stored file at `path` for the importer of `key` (`csv`, `slack`, `slack-users`),
/// sending what it finds to `sink`. Blocking: run it on a blocking thread.
pub type PrepareFn =
    fn(path: &Path, limits: &Limits, sink: &mut dyn Sink) -> Result<(), ImportError>;
