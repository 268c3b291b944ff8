//! `wharf egress`: reads VPC flow logs and wharf access logs, maps remote addresses to their owners, and
//! reports bytes, packets, flows and cost per owner, service, region, remote address or local source.
//!
//! Layout: [`flowlog`] reads records, [`owners`] answers "who owns this address", [`report`] aggregates and
//! renders, [`export`] writes the owner table and SQL for warehouses, [`cli`] is the command-line surface.

pub mod accesslog;
pub mod cli;
pub mod error;
pub mod export;
pub mod fixture;
pub mod flowlog;
pub mod net;
pub mod owners;
pub mod parquet_table;
pub mod pods;
pub mod report;
pub mod source_file;

pub use error::EgressError;
