//! The formats this crate's tests check configurations for. The real list is the server's format registry,
//! which this crate cannot see; these specs say the same as the format crates' descriptors (generic is not
//! served, so tests can check that a known but unserved format is refused).

use crate::formats::{FormatSpec, Upstreams};
use crate::model::Format;

pub(crate) const FORMATS: &[FormatSpec] = &[
    FormatSpec {
        keys: &["file_hosts"],
        ..FormatSpec::new(
            Format::Pypi,
            Upstreams::One {
                example: "https://<your index>/simple/",
            },
        )
    },
    FormatSpec {
        keys: &["file_hosts"],
        ..FormatSpec::new(
            Format::Oci,
            Upstreams::Aliased {
                example: "docker.io: \"https://<registry>\"",
            },
        )
    },
    FormatSpec {
        keys: &["file_hosts"],
        ..FormatSpec::new(
            Format::Npm,
            Upstreams::One {
                example: "https://<your npm registry>/",
            },
        )
    },
    FormatSpec {
        keys: &["file_hosts"],
        ..FormatSpec::new(
            Format::Cargo,
            Upstreams::One {
                example: "https://<your sparse cargo index>/",
            },
        )
    },
    FormatSpec {
        keys: &["checksum_databases"],
        ..FormatSpec::new(
            Format::Go,
            Upstreams::One {
                example: "https://<your Go module proxy>/",
            },
        )
    },
];
