//! litellm-org-operator: LiteLLM organizations and members as Kubernetes resources,
//! reconciled straight into LiteLLM's database.
//!
//! `crd` holds the API types, `engine` the pure planning and the one-transaction apply,
//! `store` the Postgres and SQLite implementations, `cli` the cluster-less
//! `plan` / `apply` that run the same engine on a folder of manifests, `controller` the
//! kube-runtime controllers that run it in a cluster.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod engine;
pub mod error;
pub mod http;
pub mod metrics;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod yaml;
