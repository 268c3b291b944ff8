//! End-to-end tests: the real `wharf` binary, real pip and uv, local upstreams with fault knobs.

mod support;

mod actions_cache;
mod admin_ui;
mod apt;
mod cache;
mod cargo;
mod clients;
mod config_cli;
mod containerd;
mod cooldown;
mod day2;
mod deploy;
mod fault_suite;
mod faults;
mod formats;
mod generic;
mod go;
mod hit_miss_headers;
mod hosted_oci;
mod hostile_conn;
mod hostile_mixed;
mod hostile_reach;
mod hostile_serve;
mod hostile_store;
mod image;
mod load;
mod money;
mod npm;
mod oci;
mod persistence;
mod public_urls;
mod quickstart;
mod s3;
mod security;
mod warm;
