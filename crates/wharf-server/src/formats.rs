//! The format registry: the one list of the formats this binary serves. The server builds repositories from
//! it, `wharf env` prints their client settings, `config check` refuses formats and keys none of them reads,
//! the admin API finds format-specific purge selectors in it, and the chart's values schema is generated
//! from it (`schema.rs`).
//!
//! Adding a format: a crate exporting a `FORMAT: FormatDescriptor`, and one line here.

use wharf_cache::FormatDescriptor;
use wharf_config::{Format, FormatSpec};

/// Every format this binary serves, in documentation order.
pub const FORMATS: &[&FormatDescriptor] = &[
    &wharf_pypi::FORMAT,
    &wharf_oci::FORMAT,
    &wharf_npm::FORMAT,
    &wharf_cargo::FORMAT,
    &wharf_go::FORMAT,
    &wharf_generic::FORMAT,
    &wharf_actions_cache::FORMAT,
];

/// The config part of every served format, for `Config::load`, `Config::validate` and `parse_repo_flag`.
pub fn format_specs() -> Vec<FormatSpec> {
    FORMATS.iter().map(|d| d.config).collect()
}

/// The descriptor of `format`, if this binary serves it.
pub fn descriptor(format: Format) -> Option<&'static FormatDescriptor> {
    FORMATS.iter().copied().find(|d| d.config.format == format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_is_listed_once_and_reads_only_keys_the_config_knows() {
        let mut seen = std::collections::HashSet::new();
        for d in FORMATS {
            assert!(seen.insert(d.config.format), "{} listed twice", d.name());
            for key in d.config.keys {
                assert!(
                    wharf_config::OPTIONAL_KEYS.contains(key),
                    "{} reads unknown key {key}",
                    d.name()
                );
            }
            // An own key never shadows a key every repository (or several formats) reads.
            for key in d.config.own_keys {
                assert!(
                    !wharf_config::COMMON_KEYS.contains(&key.name)
                        && !wharf_config::OPTIONAL_KEYS.contains(&key.name)
                        && !["upstream", "upstreams"].contains(&key.name),
                    "{}'s own key {} is a shared key",
                    d.name(),
                    key.name
                );
            }
        }
    }
}
