//! The IP-owner table: who owns a remote address, by longest-prefix match over tiers of sources.
//!
//! Tiers are consulted in priority order and the first tier with a matching prefix answers:
//! 1. the user's CIDRs (`--owners` YAML),
//! 2. the user's vendor ASN lists (Kubernetes `infra/meta/asns` files), applied through the ASN data,
//! 3. published cloud and CDN ranges,
//! 4. ASN data, named after the AS organisation.
//!
//! Within a tier the longest prefix wins, whichever file it came from; identical prefixes are resolved by rank
//! (a specific service beats a provider's catch-all range). This module owns the table and its lookups; the
//! parsers for each file format live in the submodules and only produce prefixes.

pub mod asn;
pub mod cloud;
pub mod load;
pub mod prefix_map;
pub mod user;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use crate::net::{key_of, key_range, net_of};
use prefix_map::{PrefixEntry, PrefixMap};

/// Who a prefix belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Owner {
    /// Organisation or vendor, e.g. `AWS`, `GitHub`, `CLOUDFLARENET (AS13335)`.
    pub name: String,
    /// Service within the owner, e.g. `S3`, `actions`, `AzureStorage`.
    pub service: Option<String>,
    /// Region or scope, e.g. `us-east-1`, `westeurope`.
    pub region: Option<String>,
    /// Autonomous system number, when the match came from ASN data.
    pub asn: Option<u32>,
    /// Which file said so, e.g. `aws ip-ranges.json`.
    pub source: String,
}

/// Priority tier of a source; lower tiers answer first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    User,
    UserAsn,
    Cloud,
    Asn,
}

impl Tier {
    /// Stable name used in outputs and in the exported table.
    pub fn name(self) -> &'static str {
        match self {
            Tier::User => "user",
            Tier::UserAsn => "user-asn",
            Tier::Cloud => "cloud",
            Tier::Asn => "asn",
        }
    }

    /// Sort position used by the exported SQL (`ORDER BY tier_order`).
    pub fn order(self) -> u8 {
        self as u8 + 1
    }
}

/// One prefix produced by a parser, before interning.
#[derive(Clone, Debug)]
pub struct RangeRecord {
    pub net: IpNet,
    pub owner: Owner,
    pub rank: u8,
}

/// A prefix from ASN data, named once all AS-name files are loaded.
#[derive(Clone, Debug)]
pub struct AsnRecord {
    pub net: IpNet,
    pub asn: u32,
    /// Organisation name carried by the same file (ip2asn, mmdb), if any; shared by that AS's ranges.
    pub org: Option<Arc<str>>,
    /// Shared by every record of one file.
    pub source: Arc<str>,
}

/// What one loaded file contributed, for the summary printed by the CLI.
#[derive(Clone, Debug, Serialize)]
pub struct SourceSummary {
    pub path: String,
    pub kind: String,
    pub prefixes: usize,
}

/// The answer to one lookup.
#[derive(Clone, Copy, Debug)]
pub struct OwnerMatch<'a> {
    pub owner: &'a Owner,
    pub owner_id: u32,
    pub tier: Tier,
    pub prefix: IpNet,
}

/// A row of the exported table: one prefix of one tier.
#[derive(Clone, Copy, Debug)]
pub struct ExportedPrefix<'a> {
    pub net: IpNet,
    pub first: u128,
    pub last: u128,
    pub tier: Tier,
    pub rank: u8,
    pub owner: &'a Owner,
}

/// Collects prefixes from any number of files, then freezes them into an [`OwnerTable`].
#[derive(Default)]
pub struct OwnerTableBuilder {
    owners: Vec<Owner>,
    owner_ids: HashMap<Owner, u32>,
    user: Vec<PrefixEntry>,
    cloud: Vec<PrefixEntry>,
    asn_records: Vec<AsnRecord>,
    as_names: HashMap<u32, String>,
    user_asns: HashMap<u32, Owner>,
    sources: Vec<SourceSummary>,
}

impl OwnerTableBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn intern(&mut self, owner: Owner) -> u32 {
        if let Some(id) = self.owner_ids.get(&owner) {
            return *id;
        }
        let id = self.owners.len() as u32;
        self.owners.push(owner.clone());
        self.owner_ids.insert(owner, id);
        id
    }

    fn entry(&mut self, record: RangeRecord) -> PrefixEntry {
        let (first, last, len) = key_range(&record.net.trunc());
        PrefixEntry {
            first,
            last,
            len,
            rank: record.rank,
            owner: self.intern(record.owner),
        }
    }

    /// Adds the user's CIDRs (tier 1).
    pub fn add_user_ranges(&mut self, records: Vec<RangeRecord>) {
        for record in records {
            let entry = self.entry(record);
            self.user.push(entry);
        }
    }

    /// Names every address of these ASNs after a user vendor (tier 2).
    pub fn add_user_asns(&mut self, asns: Vec<(u32, Owner)>) {
        for (asn, owner) in asns {
            self.user_asns.entry(asn).or_insert(owner);
        }
    }

    /// Adds published cloud or CDN ranges (tier 3).
    pub fn add_cloud_ranges(&mut self, records: Vec<RangeRecord>) {
        for record in records {
            let entry = self.entry(record);
            self.cloud.push(entry);
        }
    }

    /// Adds ASN prefixes (tier 4).
    pub fn add_asn_ranges(&mut self, records: Vec<AsnRecord>) {
        self.asn_records.extend(records);
    }

    /// Adds AS organisation names (pyasn's names JSON); names carried by prefix files take precedence.
    pub fn add_as_names(&mut self, names: HashMap<u32, String>) {
        for (asn, name) in names {
            self.as_names.entry(asn).or_insert(name);
        }
    }

    /// Records what a file contributed.
    pub fn note_source(&mut self, path: &str, kind: &str, prefixes: usize) {
        self.sources.push(SourceSummary {
            path: path.to_owned(),
            kind: kind.to_owned(),
            prefixes,
        });
    }

    /// Freezes the table.
    pub fn build(mut self) -> OwnerTable {
        let asn_records = std::mem::take(&mut self.asn_records);
        let mut asn_entries = Vec::with_capacity(asn_records.len());
        let mut user_asn_entries = Vec::new();
        // ASN files repeat one (AS number, organisation, file) for many ranges: intern each once.
        let mut asn_owner_ids: HashMap<u32, Vec<AsnOwnerSeen>> = HashMap::new();
        for record in asn_records {
            let net = record.net.trunc();
            let asn = record.asn;
            let known = asn_owner_ids.get(&asn).and_then(|seen| {
                seen.iter()
                    .find(|(org, source, _)| *org == record.org && *source == record.source)
                    .map(|(_, _, id)| *id)
            });
            let owner_id = match known {
                Some(id) => id,
                None => {
                    let org = record
                        .org
                        .as_deref()
                        .map(str::to_owned)
                        .or_else(|| self.as_names.get(&asn).cloned());
                    let name = match org {
                        Some(org) if !org.is_empty() => format!("{org} (AS{asn})"),
                        _ => format!("AS{asn}"),
                    };
                    let id = self.intern(Owner {
                        name,
                        service: None,
                        region: None,
                        asn: Some(asn),
                        source: record.source.to_string(),
                    });
                    asn_owner_ids
                        .entry(asn)
                        .or_default()
                        .push((record.org, record.source, id));
                    id
                }
            };
            let (first, last, len) = key_range(&net);
            asn_entries.push(PrefixEntry {
                first,
                last,
                len,
                rank: 0,
                owner: owner_id,
            });
            if let Some(vendor) = self.user_asns.get(&asn).cloned() {
                let vendor = Owner {
                    asn: Some(asn),
                    ..vendor
                };
                let entry = self.entry(RangeRecord {
                    net,
                    owner: vendor,
                    rank: 0,
                });
                user_asn_entries.push(entry);
            }
        }
        let user = PrefixMap::build(&mut self.user);
        let user_asn = PrefixMap::build(&mut user_asn_entries);
        let cloud = PrefixMap::build(&mut self.cloud);
        let asn = PrefixMap::build(&mut asn_entries);
        OwnerTable {
            owners: self.owners,
            tiers: [
                (Tier::User, user, self.user),
                (Tier::UserAsn, user_asn, user_asn_entries),
                (Tier::Cloud, cloud, self.cloud),
                (Tier::Asn, asn, asn_entries),
            ],
            sources: self.sources,
        }
    }
}

/// (organisation, source file, owner id) of an AS number already interned.
type AsnOwnerSeen = (Option<Arc<str>>, Arc<str>, u32);

/// The frozen owner table.
pub struct OwnerTable {
    owners: Vec<Owner>,
    tiers: [(Tier, PrefixMap, Vec<PrefixEntry>); 4],
    sources: Vec<SourceSummary>,
}

impl OwnerTable {
    /// A table with no sources: every address is unknown.
    pub fn empty() -> Self {
        OwnerTableBuilder::new().build()
    }

    /// The owner of `addr`, or `None` when no source covers it.
    pub fn lookup(&self, addr: IpAddr) -> Option<OwnerMatch<'_>> {
        let key = key_of(addr);
        self.tiers.iter().find_map(|(tier, map, _)| {
            map.lookup(key).map(|(owner_id, len)| OwnerMatch {
                owner: &self.owners[owner_id as usize],
                owner_id,
                tier: *tier,
                prefix: net_of(key, len),
            })
        })
    }

    /// The owner with this id (ids come from [`OwnerMatch::owner_id`]).
    pub fn owner(&self, id: u32) -> &Owner {
        &self.owners[id as usize]
    }

    /// Files loaded into the table.
    pub fn sources(&self) -> &[SourceSummary] {
        &self.sources
    }

    /// Number of distinct prefixes across all tiers.
    pub fn prefix_count(&self) -> usize {
        self.tiers.iter().map(|(_, _, entries)| entries.len()).sum()
    }

    /// Every prefix of every tier, in tier order; identical prefixes within a tier already reduced to one.
    pub fn prefixes(&self) -> impl Iterator<Item = ExportedPrefix<'_>> + '_ {
        self.tiers.iter().flat_map(move |(tier, _, entries)| {
            entries.iter().map(move |entry| ExportedPrefix {
                net: net_of(entry.first, entry.len),
                first: entry.first,
                last: entry.last,
                tier: *tier,
                rank: entry.rank,
                owner: &self.owners[entry.owner as usize],
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> Owner {
        Owner {
            name: name.into(),
            service: None,
            region: None,
            asn: None,
            source: "test".into(),
        }
    }

    fn record(net: &str, name: &str, rank: u8) -> RangeRecord {
        RangeRecord {
            net: net.parse().unwrap(),
            owner: owner(name),
            rank,
        }
    }

    fn name_of(table: &OwnerTable, addr: &str) -> Option<String> {
        table
            .lookup(addr.parse().unwrap())
            .map(|m| m.owner.name.clone())
    }

    #[test]
    fn user_tier_beats_a_longer_cloud_prefix_and_asn_is_the_fallback() {
        let mut builder = OwnerTableBuilder::new();
        builder.add_cloud_ranges(vec![
            record("52.0.0.0/8", "AWS", 1),
            record("52.1.0.0/16", "AWS S3", 2),
        ]);
        builder.add_user_ranges(vec![record("52.0.0.0/12", "partner", 0)]);
        builder.add_asn_ranges(vec![AsnRecord {
            net: "198.51.100.0/22".parse().unwrap(),
            asn: 64500,
            org: None,
            source: "test".into(),
        }]);
        builder.add_as_names(HashMap::from([(64500, "EXAMPLE-NET".to_string())]));
        let table = builder.build();
        assert_eq!(name_of(&table, "52.1.2.3").as_deref(), Some("partner"));
        assert_eq!(name_of(&table, "52.200.2.3").as_deref(), Some("AWS"));
        assert_eq!(
            name_of(&table, "198.51.101.1").as_deref(),
            Some("EXAMPLE-NET (AS64500)")
        );
        assert_eq!(name_of(&table, "203.0.113.1"), None);
        let found = table.lookup("52.1.2.3".parse().unwrap()).unwrap();
        assert_eq!(found.prefix.to_string(), "52.0.0.0/12");
        assert_eq!(found.tier, Tier::User);
    }

    #[test]
    fn vendor_asn_lists_rename_asn_matches_ahead_of_cloud_ranges() {
        let mut builder = OwnerTableBuilder::new();
        builder.add_cloud_ranges(vec![record("203.0.113.0/24", "SomeCloud", 1)]);
        builder.add_asn_ranges(vec![AsnRecord {
            net: "203.0.113.0/25".parse().unwrap(),
            asn: 64501,
            org: Some("ORG".into()),
            source: "test".into(),
        }]);
        builder.add_user_asns(vec![(64501, owner("vendor"))]);
        let table = builder.build();
        let found = table.lookup("203.0.113.5".parse().unwrap()).unwrap();
        assert_eq!(
            (found.owner.name.as_str(), found.tier, found.owner.asn),
            ("vendor", Tier::UserAsn, Some(64501))
        );
        assert_eq!(
            name_of(&table, "203.0.113.200").as_deref(),
            Some("SomeCloud")
        );
    }
}
