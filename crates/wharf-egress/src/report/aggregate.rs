//! Streaming aggregation of flow records into per-(local, remote) totals and an owner time series.
//!
//! Counting rule, applied per record:
//! - `NODATA`/`SKIPDATA` records and `REJECT`ed flows are counted, not attributed;
//! - addresses are the packet-level ones (`pkt-srcaddr`/`pkt-dstaddr`) when present, else `srcaddr`/`dstaddr`;
//! - a record is egress traffic when exactly one of its two addresses is public: that one is the remote,
//!   the other the local source; both directions count (a NAT gateway bills both);
//! - a NAT gateway logged with packet-level fields shows each flow twice, once on the VPC side (translated:
//!   packet addresses differ from the interface's) and once on the internet side. The VPC side names the pod,
//!   so it is kept; internet-side records whose local address is a NAT gateway address seen in a translated
//!   record are dropped at the end as duplicates.
//!
//! Memory grows with distinct (local, remote) pairs and owners, never with the number of records.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use crate::flowlog::{FlowRecord, FlowSink};
use crate::net::{addr_of, is_public, key_of};
use crate::owners::{Owner, OwnerTable};

/// How many malformed lines are quoted in reports.
pub const MALFORMED_EXAMPLES: usize = 5;
/// The time series is coarsened (bucket width doubled) to stay within this many buckets.
const MAX_BUCKETS: i64 = 240;
const FIRST_BUCKET_SECONDS: i64 = 60;
/// Stands for "the remote's owner is unknown" in owner slots.
pub const UNKNOWN_SLOT: u32 = u32::MAX;
/// Time-series key part for records that cannot be duplicates (translated, VPC-side records).
const NO_LOCAL: u128 = u128::MAX;

/// Bytes, packets and flow records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
}

impl Traffic {
    pub fn add(&mut self, other: Traffic) {
        self.bytes += other.bytes;
        self.packets += other.packets;
        self.flows += other.flows;
    }
}

/// What happened to the records read.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct InputCounters {
    pub files: u64,
    pub records: u64,
    pub counted: u64,
    pub nodata: u64,
    pub skipdata: u64,
    pub rejected: u64,
    /// Both addresses private (internal traffic) or both public.
    pub not_egress: u64,
    /// `OK` records lacking an address or the byte count.
    pub incomplete: u64,
    pub malformed: u64,
    pub malformed_examples: Vec<String>,
    /// Internet-side records of NAT gateways dropped because their VPC-side twin was counted.
    pub duplicate_records: u64,
    pub duplicate_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PairKey {
    local: u128,
    remote: u128,
    translated: bool,
}

/// One (local, remote) pair after aggregation.
#[derive(Clone, Debug)]
pub struct PairTotal {
    pub local: IpAddr,
    pub remote: IpAddr,
    /// Index into [`Aggregated::owners`], or [`UNKNOWN_SLOT`].
    pub owner_slot: u32,
    pub traffic: Traffic,
}

/// The result of a run.
pub struct Aggregated {
    pub owners: Vec<Owner>,
    pub pairs: Vec<PairTotal>,
    pub bucket_seconds: i64,
    /// (owner slot, bucket index) → bytes; the bucket starts at `index * bucket_seconds`.
    pub series: HashMap<(u32, i64), u64>,
    pub first_start: Option<i64>,
    pub last_end: Option<i64>,
    pub counters: InputCounters,
}

/// Accumulates records; see the module docs for the counting rule.
pub struct Aggregator<'t> {
    table: &'t OwnerTable,
    owners: Vec<Owner>,
    slot_of_table_owner: HashMap<u32, u32>,
    slot_of_service_hint: HashMap<String, u32>,
    owner_of_remote: HashMap<u128, u32>,
    pairs: HashMap<PairKey, Traffic>,
    nat_addresses: HashSet<u128>,
    bucket_seconds: i64,
    series: HashMap<(u32, i64, u128), u64>,
    bucket_bounds: Option<(i64, i64)>,
    first_start: Option<i64>,
    last_end: Option<i64>,
    counters: InputCounters,
    lookups: u64,
}

impl<'t> Aggregator<'t> {
    pub fn new(table: &'t OwnerTable) -> Self {
        Aggregator {
            table,
            owners: Vec::new(),
            slot_of_table_owner: HashMap::new(),
            slot_of_service_hint: HashMap::new(),
            owner_of_remote: HashMap::new(),
            pairs: HashMap::new(),
            nat_addresses: HashSet::new(),
            bucket_seconds: FIRST_BUCKET_SECONDS,
            series: HashMap::new(),
            bucket_bounds: None,
            first_start: None,
            last_end: None,
            counters: InputCounters::default(),
            lookups: 0,
        }
    }

    /// Counts one more input file.
    pub fn note_file(&mut self) {
        self.counters.files += 1;
    }

    /// Number of owner-table lookups made (each distinct remote address is looked up once).
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    fn owner_slot(&mut self, remote: IpAddr, remote_key: u128, aws_service: Option<&str>) -> u32 {
        if let Some(slot) = self.owner_of_remote.get(&remote_key) {
            return *slot;
        }
        self.lookups += 1;
        let slot = match self.table.lookup(remote) {
            Some(found) => match self.slot_of_table_owner.get(&found.owner_id) {
                Some(slot) => *slot,
                None => {
                    let slot = self.owners.len() as u32;
                    self.owners.push(found.owner.clone());
                    self.slot_of_table_owner.insert(found.owner_id, slot);
                    slot
                }
            },
            // The flow log itself may name the AWS service behind an address no range file covers.
            None => match aws_service {
                Some(service) => match self.slot_of_service_hint.get(service) {
                    Some(slot) => *slot,
                    None => {
                        let slot = self.owners.len() as u32;
                        self.owners.push(Owner {
                            name: "AWS".into(),
                            service: Some(service.to_owned()),
                            region: None,
                            asn: None,
                            source: "flow log pkt-*-aws-service".into(),
                        });
                        self.slot_of_service_hint.insert(service.to_owned(), slot);
                        slot
                    }
                },
                None => UNKNOWN_SLOT,
            },
        };
        self.owner_of_remote.insert(remote_key, slot);
        slot
    }

    fn add_to_series(&mut self, slot: u32, start: i64, local: u128, bytes: u64) {
        let mut bucket = start.div_euclid(self.bucket_seconds);
        let (low, high) = match self.bucket_bounds {
            Some((low, high)) => (low.min(bucket), high.max(bucket)),
            None => (bucket, bucket),
        };
        self.bucket_bounds = Some((low, high));
        if high - low >= MAX_BUCKETS {
            self.coarsen();
            bucket = start.div_euclid(self.bucket_seconds);
        }
        *self.series.entry((slot, bucket, local)).or_default() += bytes;
    }

    fn coarsen(&mut self) {
        while let Some((low, high)) = self.bucket_bounds {
            if high - low < MAX_BUCKETS {
                break;
            }
            self.bucket_seconds *= 2;
            self.bucket_bounds = Some((low.div_euclid(2), high.div_euclid(2)));
            let old = std::mem::take(&mut self.series);
            for ((slot, bucket, local), bytes) in old {
                *self
                    .series
                    .entry((slot, bucket.div_euclid(2), local))
                    .or_default() += bytes;
            }
        }
    }

    /// Finishes the run: drops NAT duplicates and returns the totals.
    pub fn finish(mut self) -> Aggregated {
        let mut pairs = Vec::with_capacity(self.pairs.len());
        for (key, traffic) in self.pairs {
            if !key.translated && self.nat_addresses.contains(&key.local) {
                self.counters.duplicate_records += traffic.flows;
                self.counters.duplicate_bytes += traffic.bytes;
                continue;
            }
            let owner_slot = self
                .owner_of_remote
                .get(&key.remote)
                .copied()
                .unwrap_or(UNKNOWN_SLOT);
            pairs.push(PairTotal {
                local: addr_of(key.local),
                remote: addr_of(key.remote),
                owner_slot,
                traffic,
            });
        }
        pairs.sort_by(|a, b| {
            b.traffic
                .bytes
                .cmp(&a.traffic.bytes)
                .then(a.remote.cmp(&b.remote))
                .then(a.local.cmp(&b.local))
        });
        let mut series = HashMap::new();
        for ((slot, bucket, local), bytes) in self.series {
            if local == NO_LOCAL || !self.nat_addresses.contains(&local) {
                *series.entry((slot, bucket)).or_default() += bytes;
            }
        }
        Aggregated {
            owners: self.owners,
            pairs,
            bucket_seconds: self.bucket_seconds,
            series,
            first_start: self.first_start,
            last_end: self.last_end,
            counters: self.counters,
        }
    }
}

impl FlowSink for Aggregator<'_> {
    fn record(&mut self, record: &FlowRecord<'_>) {
        self.counters.records += 1;
        match record.log_status {
            Some("NODATA") => {
                self.counters.nodata += 1;
                return;
            }
            Some("SKIPDATA") => {
                self.counters.skipdata += 1;
                return;
            }
            _ => {}
        }
        if record.action == Some("REJECT") {
            self.counters.rejected += 1;
            return;
        }
        let (Some(src), Some(dst), Some(bytes)) = (record.srcaddr, record.dstaddr, record.bytes)
        else {
            self.counters.incomplete += 1;
            return;
        };
        let packet_src = record.pkt_srcaddr.unwrap_or(src);
        let packet_dst = record.pkt_dstaddr.unwrap_or(dst);
        let outbound = match (is_public(packet_src), is_public(packet_dst)) {
            (false, true) => true,
            (true, false) => false,
            _ => {
                self.counters.not_egress += 1;
                return;
            }
        };
        let translated = packet_src != src || packet_dst != dst;
        let (local, remote, hop, aws_service) = if outbound {
            (packet_src, packet_dst, dst, record.pkt_dst_aws_service)
        } else {
            (packet_dst, packet_src, src, record.pkt_src_aws_service)
        };
        if translated && !is_public(hop) {
            // The interface address the flow passed through on its way to or from the remote.
            self.nat_addresses.insert(key_of(hop));
        }
        let remote_key = key_of(remote);
        let local_key = key_of(local);
        let slot = self.owner_slot(remote, remote_key, aws_service);
        let traffic = Traffic {
            bytes,
            packets: record.packets.unwrap_or(0),
            flows: 1,
        };
        self.pairs
            .entry(PairKey {
                local: local_key,
                remote: remote_key,
                translated,
            })
            .or_default()
            .add(traffic);
        self.counters.counted += 1;
        if let Some(start) = record.start {
            self.first_start = Some(self.first_start.map_or(start, |t| t.min(start)));
            self.add_to_series(
                slot,
                start,
                if translated { NO_LOCAL } else { local_key },
                bytes,
            );
        }
        if let Some(end) = record.end.or(record.start) {
            self.last_end = Some(self.last_end.map_or(end, |t| t.max(end)));
        }
    }

    fn malformed(&mut self, path: &Path, line: u64, reason: String) {
        self.counters.malformed += 1;
        if self.counters.malformed_examples.len() < MALFORMED_EXAMPLES {
            self.counters
                .malformed_examples
                .push(format!("{}:{line}: {reason}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(
        src: &str,
        dst: &str,
        pkt: Option<(&str, &str)>,
        bytes: u64,
        start: i64,
    ) -> FlowRecord<'a> {
        FlowRecord {
            srcaddr: src.parse().ok(),
            dstaddr: dst.parse().ok(),
            pkt_srcaddr: pkt.and_then(|p| p.0.parse().ok()),
            pkt_dstaddr: pkt.and_then(|p| p.1.parse().ok()),
            bytes: Some(bytes),
            packets: Some(1),
            start: Some(start),
            end: Some(start + 60),
            action: Some("ACCEPT"),
            log_status: Some("OK"),
            ..FlowRecord::default()
        }
    }

    #[test]
    fn nat_gateway_legs_are_counted_once_and_keep_the_pod() {
        let table = OwnerTable::empty();
        let mut agg = Aggregator::new(&table);
        // VPC side: pod 10.0.1.23 → NAT 10.0.0.5 (packet destination 203.0.113.9), and the reply.
        agg.record(&record(
            "10.0.1.23",
            "10.0.0.5",
            Some(("10.0.1.23", "203.0.113.9")),
            100,
            0,
        ));
        agg.record(&record(
            "10.0.0.5",
            "10.0.1.23",
            Some(("203.0.113.9", "10.0.1.23")),
            5000,
            0,
        ));
        // Internet side of the same flows.
        agg.record(&record(
            "10.0.0.5",
            "203.0.113.9",
            Some(("10.0.0.5", "203.0.113.9")),
            100,
            0,
        ));
        agg.record(&record(
            "203.0.113.9",
            "10.0.0.5",
            Some(("203.0.113.9", "10.0.0.5")),
            5000,
            0,
        ));
        // Internal traffic and a direct flow from an instance with a public address.
        agg.record(&record("10.0.1.23", "10.0.2.2", None, 7, 0));
        agg.record(&record("10.0.3.3", "198.51.100.1", None, 11, 0));
        let result = agg.finish();
        let total: u64 = result.pairs.iter().map(|p| p.traffic.bytes).sum();
        assert_eq!(total, 5111);
        assert_eq!(result.counters.duplicate_bytes, 5100);
        assert_eq!(result.counters.not_egress, 1);
        assert!(result
            .pairs
            .iter()
            .any(|p| p.local.to_string() == "10.0.1.23" && p.traffic.bytes == 5100));
        assert_eq!(result.series.values().sum::<u64>(), 5111);
    }

    #[test]
    fn series_coarsens_but_keeps_every_byte() {
        let table = OwnerTable::empty();
        let mut agg = Aggregator::new(&table);
        for hour in 0..48 {
            agg.record(&record(
                "10.0.0.1",
                "198.51.100.1",
                None,
                10,
                1_700_000_000 + hour * 3600,
            ));
        }
        let result = agg.finish();
        assert!(result.bucket_seconds > 60);
        assert_eq!(result.series.values().sum::<u64>(), 480);
        assert_eq!(result.last_end, Some(1_700_000_000 + 47 * 3600 + 60));
    }
}
