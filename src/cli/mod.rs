//! The cluster-less side: read a folder of manifests, plan it against a database, apply it,
//! report. The same engine as the controllers, driven from the command line.

pub mod documents;
pub mod error;
pub mod export;
pub mod files;
pub mod manifest;
pub mod offline;
pub mod output;
pub mod plan_output;
pub mod validate;
