//! The user's owner files (`--owners`): wharf's own YAML list of named CIDRs and ASNs, and the vendor files
//! of Kubernetes' `registry.k8s.io/infra/meta/asns` (`name`, `redirectsTo`, `asns`), one vendor per file.

use ipnet::IpNet;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{Owner, RangeRecord};

/// One named owner in a user file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct OwnerEntry {
    name: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default, alias = "prefixes")]
    cidrs: Vec<String>,
    #[serde(default)]
    asns: Vec<u32>,
    /// Kubernetes vendor files say where the vendor's mirror is; wharf only needs the name and ASNs.
    #[serde(default, rename = "redirectsTo")]
    _redirects_to: Option<serde::de::IgnoredAny>,
}

/// What a user file contributes: CIDRs (tier 1) and ASNs named after a vendor (tier 2).
#[derive(Debug, Default)]
pub struct UserOwners {
    pub ranges: Vec<RangeRecord>,
    pub asns: Vec<(u32, Owner)>,
}

/// Parses one owners file. Accepted shapes: `owners: [entry, ...]`, a bare list of entries, or one entry
/// (a Kubernetes vendor file).
pub fn parse_owners_yaml(text: &str, source: &str) -> Result<UserOwners, String> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let entries: Vec<(String, Value)> = match doc {
        Value::Mapping(map) if map.contains_key("owners") => match map.get("owners") {
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("owners[{i}]"), v.clone()))
                .collect(),
            _ => return Err("`owners` must be a list of entries".into()),
        },
        Value::Sequence(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("[{i}]"), v))
            .collect(),
        Value::Mapping(map) if map.contains_key("name") => {
            vec![(String::from("(top level)"), Value::Mapping(map))]
        }
        Value::Null => Vec::new(),
        _ => {
            return Err(
                "expected `owners: [...]`, a list of entries, or one vendor entry with `name`"
                    .into(),
            )
        }
    };
    let mut owners = UserOwners::default();
    for (path, value) in entries {
        let entry: OwnerEntry =
            serde_yaml_ng::from_value(value).map_err(|e| format!("{path}: {e}"))?;
        let owner = Owner {
            name: entry.name.clone(),
            service: entry.service.clone(),
            region: entry.region.clone(),
            asn: None,
            source: source.to_owned(),
        };
        for cidr in &entry.cidrs {
            let net: IpNet = cidr
                .parse()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "{path}.cidrs: `{cidr}` is not a CIDR prefix (write it as 203.0.113.0/24)"
                    )
                })?;
            owners.ranges.push(RangeRecord {
                net,
                owner: owner.clone(),
                rank: 0,
            });
        }
        owners
            .asns
            .extend(entry.asns.iter().map(|asn| (*asn, owner.clone())));
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wharf_owner_list() {
        let parsed = parse_owners_yaml(
            "owners:\n  - name: Docker Hub\n    service: registry\n    cidrs: [44.219.3.0/24, 2600:1f18:2148::/48]\n  - name: corp\n    cidrs: [198.51.100.7]\n",
            "owners.yaml",
        )
        .unwrap();
        assert_eq!(parsed.ranges.len(), 3);
        assert_eq!(parsed.ranges[2].net.to_string(), "198.51.100.7/32");
        assert_eq!(parsed.ranges[0].owner.service.as_deref(), Some("registry"));
    }

    #[test]
    fn kubernetes_vendor_file() {
        let parsed = parse_owners_yaml(
            "name: examplecloud\nredirectsTo:\n  registry: https://registry.example.test\n  artifacts: https://artifacts.example.test\nasns:\n  - 64496\n  - 64497\n",
            "examplecloud.yaml",
        )
        .unwrap();
        assert_eq!(
            parsed.asns.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            [64496, 64497]
        );
        assert_eq!(parsed.asns[0].1.name, "examplecloud");
    }

    #[test]
    fn errors_name_the_entry() {
        let err =
            parse_owners_yaml("owners:\n  - name: x\n    cidrs: [not-a-net]\n", "o").unwrap_err();
        assert!(err.contains("owners[0].cidrs"), "{err}");
        let err =
            parse_owners_yaml("owners:\n  - name: x\n    cidr: [1.2.3.0/24]\n", "o").unwrap_err();
        assert!(err.contains("owners[0]") && err.contains("cidr"), "{err}");
    }
}
