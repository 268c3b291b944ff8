//! Streaming aggregation of flow records into per-remote and per-local totals and an owner time series.
//!
//! Counting rule, applied per record:
//! - `NODATA`/`SKIPDATA` records and `REJECT`ed flows are counted, not attributed;
//! - addresses are the packet-level ones (`pkt-srcaddr`/`pkt-dstaddr`) when present, else `srcaddr`/`dstaddr`;
//! - a record is egress traffic when exactly one of its two addresses is public: that one is the remote,
//!   the other the local source; both directions count (a NAT gateway bills both);
//! - a NAT gateway logged with packet-level fields shows each flow twice, once on the VPC side (translated:
//!   packet addresses differ from the interface's) and once on the internet side. The VPC side names the pod,
//!   so it is kept; internet-side records whose local address is a NAT gateway address seen in a translated
//!   record anywhere in the input are dropped as duplicates.
//!
//! State: one entry per distinct remote address (owner, totals), one per local address (totals and the set
//! of remotes it talked to, for the per-source rows), and one per (owner, time bucket). There is no entry per
//! (local, remote) pair and none per record. The per-local remote sets are the only pair-shaped state: a
//! compact set of remote indices ([`RemoteSet`]: a hash set while small, then a bitmap over the remotes), so
//! they cost at most one bit per (local, distinct remote) and never more than a few bytes per pair.
//!
//! NAT duplicates need an end-of-run decision: a NAT address may be learnt after some of its internet-side
//! records were counted. Those records are kept apart per local address, and when that happens
//! ([`Aggregator::late_nat_locals`]) the caller replays the inputs through a [`Correction`] that subtracts
//! exactly them from the remotes and the series; the replay stops as soon as every such address has been
//! learnt again, which in real logs is within the first records.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
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

/// A fast hasher for address keys and small integer tuples. Flow logs are the user's own data, so
/// resistance to crafted collisions is not needed; a strong final mix keeps IPv4-mapped keys spread.
#[derive(Clone, Copy, Default)]
pub struct KeyHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(MIX);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }
    #[inline]
    fn write_u128(&mut self, n: u128) {
        self.add(n as u64);
        self.add((n >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// A hash map keyed by addresses or small integers, hashed with [`KeyHasher`].
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;
/// A hash set of addresses or small integers, hashed with [`KeyHasher`].
pub type KeySet<K> = HashSet<K, BuildHasherDefault<KeyHasher>>;

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

    fn subtract(&mut self, other: Traffic) {
        self.bytes -= other.bytes;
        self.packets -= other.packets;
        self.flows -= other.flows;
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

/// A set of remote indices (into [`Aggregated::remotes`]): a hash set while it is small against the number of
/// remotes, a bitmap once that is smaller.
#[derive(Clone, Debug)]
pub enum RemoteSet {
    Sparse(KeySet<u32>),
    Dense { words: Vec<u64>, len: u64 },
}

impl Default for RemoteSet {
    fn default() -> Self {
        RemoteSet::Sparse(KeySet::default())
    }
}

impl RemoteSet {
    /// Adds a remote index; `universe` is the number of remotes known now (it decides the representation).
    #[inline]
    pub fn insert(&mut self, index: u32, universe: usize) {
        match self {
            RemoteSet::Sparse(set) => {
                // A hash-set entry costs about 6 bytes, the bitmap 1 bit per remote; the bitmap is much faster,
                // so it is taken once it is at most five times the size of the set.
                if set.insert(index) && set.len() >= 64 && set.len() * 256 > universe {
                    let mut dense = RemoteSet::Dense {
                        words: Vec::new(),
                        len: 0,
                    };
                    for member in set.iter() {
                        dense.insert(*member, universe);
                    }
                    *self = dense;
                }
            }
            RemoteSet::Dense { words, len } => {
                let word = index as usize / 64;
                if word >= words.len() {
                    words.resize((word + 1).max(universe.div_ceil(64)), 0);
                }
                let bit = 1u64 << (index % 64);
                if words[word] & bit == 0 {
                    words[word] |= bit;
                    *len += 1;
                }
            }
        }
    }

    /// Number of members.
    pub fn len(&self) -> u64 {
        match self {
            RemoteSet::Sparse(set) => set.len() as u64,
            RemoteSet::Dense { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member, in no particular order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            RemoteSet::Sparse(set) => Box::new(set.iter().copied()),
            RemoteSet::Dense { words, .. } => {
                Box::new(words.iter().enumerate().flat_map(|(w, word)| {
                    let mut word = *word;
                    std::iter::from_fn(move || {
                        if word == 0 {
                            return None;
                        }
                        let bit = word.trailing_zeros();
                        word &= word - 1;
                        Some(w as u32 * 64 + bit)
                    })
                }))
            }
        }
    }

    /// Adds every member of `other`.
    pub fn union_with(&mut self, other: &RemoteSet, universe: usize) {
        for index in other.iter() {
            self.insert(index, universe);
        }
    }

    fn heap_entries(&self) -> usize {
        match self {
            RemoteSet::Sparse(set) => set.len(),
            RemoteSet::Dense { words, .. } => words.len(),
        }
    }
}

/// One remote address after aggregation.
#[derive(Clone, Debug)]
pub struct RemoteTotal {
    pub remote: IpAddr,
    /// Index into [`Aggregated::owners`], or [`UNKNOWN_SLOT`].
    pub owner_slot: u32,
    pub traffic: Traffic,
}

/// One local address after aggregation: its traffic and the remotes it exchanged it with.
#[derive(Clone, Debug)]
pub struct SourceTotal {
    pub local: IpAddr,
    pub traffic: Traffic,
    /// Indices into [`Aggregated::remotes`].
    pub remotes: RemoteSet,
}

/// The result of a run.
pub struct Aggregated {
    pub owners: Vec<Owner>,
    /// Remote addresses with counted traffic, in first-seen order.
    pub remotes: Vec<RemoteTotal>,
    /// Local addresses with counted traffic, ordered by address.
    pub sources: Vec<SourceTotal>,
    pub bucket_seconds: i64,
    /// (owner slot, bucket index) → bytes; the bucket starts at `index * bucket_seconds`.
    pub series: HashMap<(u32, i64), u64>,
    pub first_start: Option<i64>,
    pub last_end: Option<i64>,
    pub counters: InputCounters,
    /// Entries the aggregation held at the end (remotes, locals, members of the per-local remote sets as
    /// stored, series buckets, NAT addresses): what its memory grows with.
    pub kept_entries: usize,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum SlotKey {
    Table(u32),
    Hint(String),
}

#[derive(Clone, Copy)]
struct RemoteEntry {
    key: u128,
    slot: u32,
    traffic: Traffic,
}

#[derive(Default)]
struct Part {
    traffic: Traffic,
    remotes: RemoteSet,
}

/// A local address's counted traffic: records that passed through a NAT (translated) and the rest, kept
/// apart because the rest is dropped if the address turns out to be a NAT gateway's.
#[derive(Default)]
struct LocalEntry {
    direct: Part,
    translated: Part,
}

/// The byte time series, coarsened as the covered time grows.
struct SeriesAcc {
    bucket_seconds: i64,
    bounds: Option<(i64, i64)>,
    /// (owner slot, bucket) → (bytes, records).
    map: KeyMap<(u32, i64), (u64, u64)>,
}

impl SeriesAcc {
    fn new() -> Self {
        SeriesAcc {
            bucket_seconds: FIRST_BUCKET_SECONDS,
            bounds: None,
            map: KeyMap::default(),
        }
    }

    /// Widens the covered time by `start` (every counted record does, duplicates included) and returns its
    /// bucket.
    #[inline]
    fn note(&mut self, start: i64) -> i64 {
        let bucket = start.div_euclid(self.bucket_seconds);
        let (low, high) = match self.bounds {
            Some((low, high)) if (low..=high).contains(&bucket) => return bucket,
            Some((low, high)) => (low.min(bucket), high.max(bucket)),
            None => (bucket, bucket),
        };
        self.bounds = Some((low, high));
        if high - low >= MAX_BUCKETS {
            while let Some((low, high)) = self.bounds {
                if high - low < MAX_BUCKETS {
                    break;
                }
                self.rescale(self.bucket_seconds * 2);
            }
            return start.div_euclid(self.bucket_seconds);
        }
        bucket
    }

    /// Re-buckets to a wider (power-of-two multiple) bucket width.
    fn rescale(&mut self, bucket_seconds: i64) {
        if bucket_seconds == self.bucket_seconds {
            return;
        }
        let factor = bucket_seconds / self.bucket_seconds;
        self.bucket_seconds = bucket_seconds;
        self.bounds = self
            .bounds
            .map(|(low, high)| (low.div_euclid(factor), high.div_euclid(factor)));
        let old = std::mem::take(&mut self.map);
        for ((slot, bucket), (bytes, records)) in old {
            let entry = self
                .map
                .entry((slot, bucket.div_euclid(factor)))
                .or_default();
            entry.0 += bytes;
            entry.1 += records;
        }
    }
}

/// Read-only view of the aggregator a parallel worker reports to: remotes it already named keep their owner.
#[derive(Clone, Copy)]
struct Base<'a> {
    remote_index: &'a KeyMap<u128, u32>,
    remotes: &'a [RemoteEntry],
    slot_keys: &'a [SlotKey],
}

/// What a parallel worker found, ready to be merged.
pub struct WorkerTotals {
    slot_keys: Vec<SlotKey>,
    remotes: Vec<RemoteEntry>,
    locals: KeyMap<u128, LocalEntry>,
    nat_addresses: KeySet<u128>,
    series: SeriesAcc,
    first_start: Option<i64>,
    last_end: Option<i64>,
    counters: InputCounters,
    lookups: u64,
}

/// Accumulates records; see the module docs for the counting rule.
pub struct Aggregator<'t> {
    table: &'t OwnerTable,
    base: Option<Base<'t>>,
    owners: Vec<Owner>,
    slot_keys: Vec<SlotKey>,
    slot_of_key: HashMap<SlotKey, u32>,
    remote_index: KeyMap<u128, u32>,
    remotes: Vec<RemoteEntry>,
    locals: KeyMap<u128, LocalEntry>,
    nat_addresses: KeySet<u128>,
    series: SeriesAcc,
    first_start: Option<i64>,
    last_end: Option<i64>,
    counters: InputCounters,
    lookups: u64,
}

impl<'t> Aggregator<'t> {
    pub fn new(table: &'t OwnerTable) -> Self {
        Aggregator {
            table,
            base: None,
            owners: Vec::new(),
            slot_keys: Vec::new(),
            slot_of_key: HashMap::new(),
            remote_index: KeyMap::default(),
            remotes: Vec::new(),
            locals: KeyMap::default(),
            nat_addresses: KeySet::default(),
            series: SeriesAcc::new(),
            first_start: None,
            last_end: None,
            counters: InputCounters::default(),
            lookups: 0,
        }
    }

    /// A worker for one part of a file read in parallel: it knows the NAT addresses learnt so far and the
    /// owners already given to remotes, and is merged back with [`Aggregator::merge`].
    pub fn worker<'w>(&'w self) -> Aggregator<'w> {
        let mut worker = Aggregator::new(self.table);
        worker.base = Some(Base {
            remote_index: &self.remote_index,
            remotes: &self.remotes,
            slot_keys: &self.slot_keys,
        });
        worker.nat_addresses = self.nat_addresses.clone();
        worker
    }

    /// Counts one more input file.
    pub fn note_file(&mut self) {
        self.counters.files += 1;
    }

    /// Number of owner-table lookups made (each distinct remote address is looked up once per worker).
    pub fn lookups(&self) -> u64 {
        self.lookups
    }

    /// Counts malformed lines found elsewhere (a parallel reader): `examples` in input order.
    pub fn note_malformed(&mut self, count: u64, examples: impl IntoIterator<Item = String>) {
        self.counters.malformed += count;
        for example in examples {
            if self.counters.malformed_examples.len() < MALFORMED_EXAMPLES {
                self.counters.malformed_examples.push(example);
            }
        }
    }

    fn slot_for(&mut self, key: SlotKey) -> u32 {
        if let Some(slot) = self.slot_of_key.get(&key) {
            return *slot;
        }
        let owner = match &key {
            SlotKey::Table(id) => self.table.owner(*id).clone(),
            SlotKey::Hint(service) => Owner {
                name: "AWS".into(),
                service: Some(service.clone()),
                region: None,
                asn: None,
                source: "flow log pkt-*-aws-service".into(),
            },
        };
        let slot = self.owners.len() as u32;
        self.owners.push(owner);
        self.slot_keys.push(key.clone());
        self.slot_of_key.insert(key, slot);
        slot
    }

    /// The index of the remote's entry, created (and its owner decided) on first sight.
    #[inline]
    fn remote(&mut self, remote: IpAddr, key: u128, aws_service: Option<&str>) -> u32 {
        if let Some(index) = self.remote_index.get(&key) {
            return *index;
        }
        self.new_remote(remote, key, aws_service)
    }

    #[cold]
    fn new_remote(&mut self, remote: IpAddr, key: u128, aws_service: Option<&str>) -> u32 {
        let known = self.base.and_then(|base| {
            let index = *base.remote_index.get(&key)?;
            let slot = base.remotes[index as usize].slot;
            Some((slot != UNKNOWN_SLOT).then(|| base.slot_keys[slot as usize].clone()))
        });
        let slot_key = match known {
            Some(decided) => decided,
            None => {
                self.lookups += 1;
                match self.table.lookup(remote) {
                    Some(found) => Some(SlotKey::Table(found.owner_id)),
                    // The flow log itself may name the AWS service behind an address no range file covers.
                    None => aws_service.map(|s| SlotKey::Hint(s.to_owned())),
                }
            }
        };
        let slot = slot_key.map_or(UNKNOWN_SLOT, |k| self.slot_for(k));
        let index = self.remotes.len() as u32;
        self.remotes.push(RemoteEntry {
            key,
            slot,
            traffic: Traffic::default(),
        });
        self.remote_index.insert(key, index);
        index
    }

    /// NAT addresses some of whose internet-side records were counted before the address was learnt: the
    /// caller must replay the inputs through a [`Correction`] (then [`Aggregator::apply`] it) before
    /// [`Aggregator::finish`].
    pub fn late_nat_locals(&self) -> KeySet<u128> {
        self.nat_addresses
            .iter()
            .filter(|key| {
                self.locals
                    .get(*key)
                    .is_some_and(|local| local.direct.traffic.flows > 0)
            })
            .copied()
            .collect()
    }

    /// A finished worker's totals, detached from the aggregator it read from.
    pub fn into_totals(self) -> WorkerTotals {
        WorkerTotals {
            slot_keys: self.slot_keys,
            remotes: self.remotes,
            locals: self.locals,
            nat_addresses: self.nat_addresses,
            series: self.series,
            first_start: self.first_start,
            last_end: self.last_end,
            counters: self.counters,
            lookups: self.lookups,
        }
    }

    /// Folds a worker's totals into this aggregator. Workers of one file are merged in file order.
    pub fn merge(&mut self, worker: WorkerTotals) {
        let slot_map: Vec<u32> = worker
            .slot_keys
            .iter()
            .map(|key| self.slot_for(key.clone()))
            .collect();
        let map_slot = |slot: u32| {
            if slot == UNKNOWN_SLOT {
                UNKNOWN_SLOT
            } else {
                slot_map[slot as usize]
            }
        };
        let mut index_map = Vec::with_capacity(worker.remotes.len());
        for entry in &worker.remotes {
            let index = match self.remote_index.get(&entry.key) {
                Some(index) => *index,
                None => {
                    let index = self.remotes.len() as u32;
                    self.remotes.push(RemoteEntry {
                        key: entry.key,
                        slot: map_slot(entry.slot),
                        traffic: Traffic::default(),
                    });
                    self.remote_index.insert(entry.key, index);
                    index
                }
            };
            self.remotes[index as usize].traffic.add(entry.traffic);
            index_map.push(index);
        }
        let universe = self.remotes.len();
        for (key, local) in worker.locals {
            let mine = self.locals.entry(key).or_default();
            for (into, from) in [
                (&mut mine.direct, local.direct),
                (&mut mine.translated, local.translated),
            ] {
                into.traffic.add(from.traffic);
                for index in from.remotes.iter() {
                    into.remotes.insert(index_map[index as usize], universe);
                }
            }
        }
        self.nat_addresses.extend(worker.nat_addresses);
        let mut series = worker.series;
        let width = self.series.bucket_seconds.max(series.bucket_seconds);
        self.series.rescale(width);
        series.rescale(width);
        if let Some((low, high)) = series.bounds {
            self.series.note(low * width);
            self.series.note(high * width);
        }
        let width = self.series.bucket_seconds;
        series.rescale(width);
        for ((slot, bucket), (bytes, records)) in series.map {
            let entry = self.series.map.entry((map_slot(slot), bucket)).or_default();
            entry.0 += bytes;
            entry.1 += records;
        }
        self.first_start = match (self.first_start, worker.first_start) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_end = match (self.last_end, worker.last_end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let theirs = worker.counters;
        let ours = &mut self.counters;
        ours.files += theirs.files;
        ours.records += theirs.records;
        ours.counted += theirs.counted;
        ours.nodata += theirs.nodata;
        ours.skipdata += theirs.skipdata;
        ours.rejected += theirs.rejected;
        ours.not_egress += theirs.not_egress;
        ours.incomplete += theirs.incomplete;
        ours.duplicate_records += theirs.duplicate_records;
        ours.duplicate_bytes += theirs.duplicate_bytes;
        self.note_malformed(theirs.malformed, theirs.malformed_examples);
        self.lookups += worker.lookups;
    }

    /// A replay that finds the records to take back for `late` NAT addresses (see the module docs).
    pub fn correction(&self, late: KeySet<u128>) -> Correction<'_> {
        Correction {
            remote_index: &self.remote_index,
            remotes: &self.remotes,
            bucket_seconds: self.series.bucket_seconds,
            remaining: late.len(),
            late,
            learnt: KeySet::default(),
            remote_minus: KeyMap::default(),
            series_minus: KeyMap::default(),
        }
    }

    /// Takes back what a finished [`Correction`] found.
    pub fn apply(&mut self, found: CorrectionFound) {
        for (index, traffic) in found.remote_minus {
            self.remotes[index as usize].traffic.subtract(traffic);
        }
        for (key, (bytes, records)) in found.series_minus {
            if let Some(entry) = self.series.map.get_mut(&key) {
                entry.0 -= bytes;
                entry.1 -= records;
                if entry.1 == 0 {
                    self.series.map.remove(&key);
                }
            }
        }
    }

    /// Finishes the run: drops NAT duplicates and returns the totals.
    pub fn finish(mut self) -> Aggregated {
        // Internet-side records of NAT addresses counted before the address was learnt (already taken back
        // from the remotes and the series by a correction).
        for key in &self.nat_addresses {
            if let Some(local) = self.locals.get_mut(key) {
                let dropped = std::mem::take(&mut local.direct);
                self.counters.duplicate_records += dropped.traffic.flows;
                self.counters.duplicate_bytes += dropped.traffic.bytes;
            }
        }
        // Remotes whose every record was a duplicate are not reported; renumber the rest.
        let mut renumber: Vec<u32> = Vec::with_capacity(self.remotes.len());
        let mut remotes = Vec::with_capacity(self.remotes.len());
        for entry in &self.remotes {
            renumber.push(remotes.len() as u32);
            if entry.traffic.flows > 0 {
                remotes.push(RemoteTotal {
                    remote: addr_of(entry.key),
                    owner_slot: entry.slot,
                    traffic: entry.traffic,
                });
            }
        }
        let renumbered = remotes.len() != self.remotes.len();
        let universe = remotes.len();
        let mut kept_entries = remotes.len() + self.series.map.len() + self.nat_addresses.len();
        let mut sources = Vec::with_capacity(self.locals.len());
        for (key, local) in self.locals {
            kept_entries +=
                1 + local.direct.remotes.heap_entries() + local.translated.remotes.heap_entries();
            let mut traffic = local.direct.traffic;
            traffic.add(local.translated.traffic);
            if traffic.flows == 0 {
                continue;
            }
            let (mut set, other) = if local.direct.remotes.len() >= local.translated.remotes.len() {
                (local.direct.remotes, local.translated.remotes)
            } else {
                (local.translated.remotes, local.direct.remotes)
            };
            if renumbered {
                let mut fresh = RemoteSet::default();
                for index in set.iter().chain(other.iter()) {
                    fresh.insert(renumber[index as usize], universe);
                }
                set = fresh;
            } else {
                set.union_with(&other, universe);
            }
            sources.push(SourceTotal {
                local: addr_of(key),
                traffic,
                remotes: set,
            });
        }
        sources.sort_by_key(|s| s.local);
        let series = self
            .series
            .map
            .into_iter()
            .map(|(key, (bytes, _))| (key, bytes))
            .collect();
        Aggregated {
            owners: self.owners,
            remotes,
            sources,
            bucket_seconds: self.series.bucket_seconds,
            series,
            first_start: self.first_start,
            last_end: self.last_end,
            counters: self.counters,
            kept_entries,
        }
    }
}

/// What one record means for the totals, shared by the aggregator and the correction replay.
struct Classified {
    local: IpAddr,
    remote: IpAddr,
    /// The private interface address a translated record passed through (a NAT gateway's).
    nat_hop: Option<IpAddr>,
    translated: bool,
    outbound: bool,
    bytes: u64,
}

enum Verdict {
    NoData,
    SkipData,
    Rejected,
    Incomplete,
    NotEgress,
    Egress(Classified),
}

#[inline]
fn classify(record: &FlowRecord<'_>) -> Verdict {
    match record.log_status {
        Some("NODATA") => return Verdict::NoData,
        Some("SKIPDATA") => return Verdict::SkipData,
        _ => {}
    }
    if record.action == Some("REJECT") {
        return Verdict::Rejected;
    }
    let (Some(src), Some(dst), Some(bytes)) = (record.srcaddr, record.dstaddr, record.bytes) else {
        return Verdict::Incomplete;
    };
    let packet_src = record.pkt_srcaddr.unwrap_or(src);
    let packet_dst = record.pkt_dstaddr.unwrap_or(dst);
    let outbound = match (is_public(packet_src), is_public(packet_dst)) {
        (false, true) => true,
        (true, false) => false,
        _ => return Verdict::NotEgress,
    };
    let translated = packet_src != src || packet_dst != dst;
    let (local, remote, hop) = if outbound {
        (packet_src, packet_dst, dst)
    } else {
        (packet_dst, packet_src, src)
    };
    Verdict::Egress(Classified {
        local,
        remote,
        nat_hop: (translated && !is_public(hop)).then_some(hop),
        translated,
        outbound,
        bytes,
    })
}

impl FlowSink for Aggregator<'_> {
    #[inline]
    fn record(&mut self, record: &FlowRecord<'_>) {
        self.counters.records += 1;
        let flow = match classify(record) {
            Verdict::NoData => return self.counters.nodata += 1,
            Verdict::SkipData => return self.counters.skipdata += 1,
            Verdict::Rejected => return self.counters.rejected += 1,
            Verdict::Incomplete => return self.counters.incomplete += 1,
            Verdict::NotEgress => return self.counters.not_egress += 1,
            Verdict::Egress(flow) => flow,
        };
        if let Some(hop) = flow.nat_hop {
            self.nat_addresses.insert(key_of(hop));
        }
        let aws_service = if flow.outbound {
            record.pkt_dst_aws_service
        } else {
            record.pkt_src_aws_service
        };
        let index = self.remote(flow.remote, key_of(flow.remote), aws_service);
        let local_key = key_of(flow.local);
        self.counters.counted += 1;
        let bucket = record.start.map(|start| {
            self.first_start = Some(self.first_start.map_or(start, |t| t.min(start)));
            self.series.note(start)
        });
        if let Some(end) = record.end.or(record.start) {
            self.last_end = Some(self.last_end.map_or(end, |t| t.max(end)));
        }
        if !flow.translated
            && !self.nat_addresses.is_empty()
            && self.nat_addresses.contains(&local_key)
        {
            // An internet-side record of a NAT gateway whose VPC-side twin names the pod.
            self.counters.duplicate_records += 1;
            self.counters.duplicate_bytes += flow.bytes;
            return;
        }
        let traffic = Traffic {
            bytes: flow.bytes,
            packets: record.packets.unwrap_or(0),
            flows: 1,
        };
        let entry = &mut self.remotes[index as usize];
        entry.traffic.add(traffic);
        let slot = entry.slot;
        let universe = self.remotes.len();
        let local = self.locals.entry(local_key).or_default();
        let part = if flow.translated {
            &mut local.translated
        } else {
            &mut local.direct
        };
        part.traffic.add(traffic);
        part.remotes.insert(index, universe);
        if let Some(bucket) = bucket {
            let entry = self.series.map.entry((slot, bucket)).or_default();
            entry.0 += flow.bytes;
            entry.1 += 1;
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

/// A replay of the inputs, in the same order, that finds the internet-side records of late-learnt NAT
/// addresses which were counted; it is done once every such address has been learnt again.
pub struct Correction<'a> {
    remote_index: &'a KeyMap<u128, u32>,
    remotes: &'a [RemoteEntry],
    bucket_seconds: i64,
    late: KeySet<u128>,
    learnt: KeySet<u128>,
    remaining: usize,
    remote_minus: KeyMap<u32, Traffic>,
    series_minus: KeyMap<(u32, i64), (u64, u64)>,
}

/// What a [`Correction`] found, for [`Aggregator::apply`].
pub struct CorrectionFound {
    remote_minus: KeyMap<u32, Traffic>,
    series_minus: KeyMap<(u32, i64), (u64, u64)>,
}

impl Correction<'_> {
    /// Whether every late address has been learnt again (nothing further can have been counted).
    pub fn done(&self) -> bool {
        self.remaining == 0
    }

    pub fn found(self) -> CorrectionFound {
        CorrectionFound {
            remote_minus: self.remote_minus,
            series_minus: self.series_minus,
        }
    }
}

impl FlowSink for Correction<'_> {
    fn record(&mut self, record: &FlowRecord<'_>) {
        let Verdict::Egress(flow) = classify(record) else {
            return;
        };
        if let Some(hop) = flow.nat_hop {
            let key = key_of(hop);
            if self.late.contains(&key) && self.learnt.insert(key) {
                self.remaining -= 1;
            }
        }
        let local_key = key_of(flow.local);
        if flow.translated || !self.late.contains(&local_key) || self.learnt.contains(&local_key) {
            return;
        }
        let Some(index) = self.remote_index.get(&key_of(flow.remote)).copied() else {
            return;
        };
        self.remote_minus.entry(index).or_default().add(Traffic {
            bytes: flow.bytes,
            packets: record.packets.unwrap_or(0),
            flows: 1,
        });
        if let Some(start) = record.start {
            let slot = self.remotes[index as usize].slot;
            let entry = self
                .series_minus
                .entry((slot, start.div_euclid(self.bucket_seconds)))
                .or_default();
            entry.0 += flow.bytes;
            entry.1 += 1;
        }
    }

    fn malformed(&mut self, _path: &Path, _line: u64, _reason: String) {}

    fn done(&self) -> bool {
        self.remaining == 0
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

    fn run(records: &[FlowRecord<'_>]) -> Aggregated {
        let table = OwnerTable::empty();
        let mut agg = Aggregator::new(&table);
        for r in records {
            agg.record(r);
        }
        let late = agg.late_nat_locals();
        if !late.is_empty() {
            let mut correction = agg.correction(late);
            for r in records {
                if correction.done() {
                    break;
                }
                correction.record(r);
            }
            let found = correction.found();
            agg.apply(found);
        }
        agg.finish()
    }

    fn nat_legs<'a>() -> Vec<FlowRecord<'a>> {
        vec![
            // VPC side: pod 10.0.1.23 → NAT 10.0.0.5 (packet destination 203.0.113.9), and the reply.
            record(
                "10.0.1.23",
                "10.0.0.5",
                Some(("10.0.1.23", "203.0.113.9")),
                100,
                0,
            ),
            record(
                "10.0.0.5",
                "10.0.1.23",
                Some(("203.0.113.9", "10.0.1.23")),
                5000,
                0,
            ),
            // Internet side of the same flows.
            record(
                "10.0.0.5",
                "203.0.113.9",
                Some(("10.0.0.5", "203.0.113.9")),
                100,
                0,
            ),
            record(
                "203.0.113.9",
                "10.0.0.5",
                Some(("203.0.113.9", "10.0.0.5")),
                5000,
                0,
            ),
            // Internal traffic and a direct flow from an instance with a public address.
            record("10.0.1.23", "10.0.2.2", None, 7, 0),
            record("10.0.3.3", "198.51.100.1", None, 11, 0),
        ]
    }

    fn check_nat_result(result: &Aggregated) {
        let total: u64 = result.remotes.iter().map(|r| r.traffic.bytes).sum();
        assert_eq!(total, 5111);
        assert_eq!(result.counters.duplicate_bytes, 5100);
        assert_eq!(result.counters.duplicate_records, 2);
        assert_eq!(result.counters.not_egress, 1);
        let pod = result
            .sources
            .iter()
            .find(|s| s.local.to_string() == "10.0.1.23")
            .unwrap();
        assert_eq!((pod.traffic.bytes, pod.remotes.len()), (5100, 1));
        assert!(!result
            .sources
            .iter()
            .any(|s| s.local.to_string() == "10.0.0.5"));
        assert_eq!(result.series.values().sum::<u64>(), 5111);
    }

    #[test]
    fn nat_gateway_legs_are_counted_once_and_keep_the_pod() {
        check_nat_result(&run(&nat_legs()));
    }

    #[test]
    fn nat_addresses_learnt_late_are_taken_back_by_the_replay() {
        // The internet side comes first: it is counted, then taken back once the NAT address is known.
        let mut records = nat_legs();
        records.rotate_left(2);
        let table = OwnerTable::empty();
        let mut agg = Aggregator::new(&table);
        for r in &records {
            agg.record(r);
        }
        assert_eq!(agg.late_nat_locals().len(), 1);
        check_nat_result(&run(&records));
        // A remote seen only on the internet side of a NAT leaves no row and no series bucket.
        let mut records = vec![record(
            "10.0.0.5",
            "192.0.2.1",
            Some(("10.0.0.5", "192.0.2.1")),
            9,
            7200,
        )];
        records.extend(nat_legs());
        let result = run(&records);
        assert!(!result
            .remotes
            .iter()
            .any(|r| r.remote.to_string() == "192.0.2.1"));
        assert_eq!(result.counters.duplicate_bytes, 5109);
        assert!(result.series.keys().all(|(_, bucket)| *bucket == 0));
        assert_eq!(
            result.remotes.iter().map(|r| r.traffic.bytes).sum::<u64>(),
            5111
        );
        assert_eq!(result.series.values().sum::<u64>(), 5111);
    }

    #[test]
    fn series_coarsens_but_keeps_every_byte() {
        let records: Vec<_> = (0..48)
            .map(|hour| {
                record(
                    "10.0.0.1",
                    "198.51.100.1",
                    None,
                    10,
                    1_700_000_000 + hour * 3600,
                )
            })
            .collect();
        let result = run(&records);
        assert!(result.bucket_seconds > 60);
        assert_eq!(result.series.values().sum::<u64>(), 480);
        assert_eq!(result.last_end, Some(1_700_000_000 + 47 * 3600 + 60));
    }

    #[test]
    fn workers_merge_to_the_sequential_result() {
        let mut records = Vec::new();
        let remotes: Vec<String> = (0..300)
            .map(|i| format!("198.51.{}.{}", i / 200, i % 200 + 1))
            .collect();
        let locals: Vec<String> = (0..40)
            .map(|i| format!("10.0.{}.{}", i / 20, i % 20 + 1))
            .collect();
        let mut rng = crate::fixture::Rng::new(7);
        for i in 0..5000i64 {
            let remote = &remotes[rng.below(300) as usize];
            let local = &locals[rng.below(40) as usize];
            let start = 1_700_000_000 + i * 40;
            records.push(if i % 2 == 0 {
                record(local, remote, None, rng.below(1000), start)
            } else {
                record(remote, local, None, rng.below(1000), start)
            });
        }
        let sequential = run(&records);
        let table = OwnerTable::empty();
        let mut main = Aggregator::new(&table);
        let mut totals = Vec::new();
        for part in records.chunks(1700) {
            let mut worker = main.worker();
            for r in part {
                worker.record(r);
            }
            totals.push(worker.into_totals());
        }
        // Merge out of order: the result must not depend on it.
        totals.reverse();
        for t in totals {
            main.merge(t);
        }
        let parallel = main.finish();
        let by_remote = |a: &Aggregated| {
            let mut v: Vec<_> = a.remotes.iter().map(|r| (r.remote, r.traffic)).collect();
            v.sort_by_key(|(r, _)| *r);
            v
        };
        let by_source = |a: &Aggregated| {
            a.sources
                .iter()
                .map(|s| {
                    let mut members: Vec<IpAddr> = s
                        .remotes
                        .iter()
                        .map(|i| a.remotes[i as usize].remote)
                        .collect();
                    members.sort();
                    (s.local, s.traffic, members)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(by_remote(&sequential), by_remote(&parallel));
        assert_eq!(by_source(&sequential), by_source(&parallel));
        assert_eq!(sequential.series, parallel.series);
        assert_eq!(sequential.bucket_seconds, parallel.bucket_seconds);
        assert_eq!(sequential.counters.counted, parallel.counters.counted);
        // 40 locals × 300 remotes: the per-local sets turned into bitmaps of 5 words each.
        assert!(sequential
            .sources
            .iter()
            .all(|s| matches!(s.remotes, RemoteSet::Dense { .. })));
    }
}
