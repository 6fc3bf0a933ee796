//! The one error type of the command-line commands: whatever stops a command before it can
//! report per object (a database that cannot be opened, a file that cannot be read, the
//! cluster that cannot be reached). Per-object problems are [`ManifestError`]s in a report.
//!
//! [`ManifestError`]: crate::cli::manifest::ManifestError

use std::path::PathBuf;

use crate::error::StoreError;

/// Why a command stopped. Messages never contain the database URL or password.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The database could not be opened, checked or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the ledger failed (a conflict while importing rows of an earlier version).
    #[error(transparent)]
    Engine(#[from] crate::error::EngineError),
    /// A file the command needs could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file the command writes (`--output-file`) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The command line lacks something.
    #[error("{0}")]
    Usage(String),
    /// The CustomResourceDefinitions could not be rendered.
    #[error("cannot render the CRDs: {0}")]
    Crd(#[from] crate::yaml::Error),
    /// The Kubernetes side of `run` failed (already worded with what was attempted).
    #[error("{0}")]
    Cluster(String),
}
