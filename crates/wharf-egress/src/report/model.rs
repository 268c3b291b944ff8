//! The report as data: grouped rows with top-N, `other` and `unknown`, totals, cost, time range and the
//! series the HTML charts draw. Every output format renders this one structure.

use std::collections::HashMap;

use serde::Serialize;

use super::aggregate::{Aggregated, InputCounters, RemoteSet, Traffic, UNKNOWN_SLOT};
use crate::accesslog::AccessSummary;
use crate::owners::{Owner, SourceSummary};
use crate::pods::PodNames;
use wharf_text::rfc3339;

/// Bytes in the gigabyte AWS bills by (2^30).
pub const BYTES_PER_GB: u64 = 1 << 30;
/// NAT gateway data-processing price, USD per GB, in most AWS regions (us-east-1 among them).
pub const DEFAULT_PRICE_PER_GB: f64 = 0.045;
/// Label of rows whose remote address no source covers.
pub const UNKNOWN: &str = "unknown";
const OWNERS_IN_CHARTS: usize = 8;
const BARS_IN_CHARTS: usize = 10;

/// How rows are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Owner,
    Service,
    Region,
    Remote,
    Source,
}

/// What a row stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    Group,
    Other,
    Unknown,
    Total,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub group: String,
    pub kind: RowKind,
    /// The owner of the remote address, for `--by remote`.
    pub owner: Option<String>,
    pub bytes: u64,
    pub packets: u64,
    pub flows: u64,
    pub remote_ips: u64,
    pub cost_usd: f64,
    /// Fraction of all attributed bytes.
    pub share: f64,
    /// Number of groups folded into an `other` row.
    pub groups: u64,
}

/// Covered time, from the earliest record start to the latest record end.
#[derive(Clone, Debug, Serialize)]
pub struct TimeRange {
    pub start: String,
    pub end: String,
    pub start_unix: i64,
    pub end_unix: i64,
}

/// Bytes per time bucket for the top owners.
#[derive(Clone, Debug, Serialize)]
pub struct Series {
    pub bucket_seconds: i64,
    pub bucket_starts: Vec<i64>,
    pub lines: Vec<SeriesLine>,
}

/// One owner's bytes per bucket.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesLine {
    pub owner: String,
    pub bytes: Vec<u64>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub group_by: GroupBy,
    pub price_per_gb: f64,
    pub bytes_per_gb: u64,
    pub time_range: Option<TimeRange>,
    pub total: Row,
    pub rows: Vec<Row>,
    pub top_owners: Vec<Row>,
    pub top_sources: Vec<Row>,
    pub series: Series,
    pub input: InputCounters,
    pub access_log: Option<AccessSummary>,
    /// The access logs' traffic in money, at `price_per_gb`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_savings: Option<AccessSavings>,
    pub owner_sources: Vec<SourceSummary>,
}

/// What wharf's traffic (from its access logs) would have cost fetched upstream, and what it saved.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AccessSavings {
    /// Bytes served without an upstream fetch, priced.
    pub saved_usd: f64,
    /// Every byte served, priced: the bill with no cache in front.
    pub without_wharf_usd: f64,
}

impl AccessSavings {
    pub fn new(access: &AccessSummary, price_per_gb: f64) -> AccessSavings {
        AccessSavings {
            saved_usd: cost(access.total.bytes_saved, price_per_gb),
            without_wharf_usd: cost(access.total.bytes_served, price_per_gb),
        }
    }

    /// "wharf saved $X of the $Y this traffic would have cost (at $P/GB)".
    pub fn sentence(&self, price_per_gb: f64) -> String {
        format!(
            "wharf saved {} of the {} this traffic would have cost (at {}/GB)",
            wharf_text::usd(self.saved_usd),
            wharf_text::usd(self.without_wharf_usd),
            wharf_text::usd(price_per_gb)
        )
    }
}

/// Report settings.
pub struct ReportShape<'a> {
    pub group_by: GroupBy,
    pub top: usize,
    pub price_per_gb: f64,
    pub pods: Option<&'a PodNames>,
}

fn owner_label(owner: Option<&Owner>, by: GroupBy) -> String {
    let Some(owner) = owner else {
        return UNKNOWN.to_owned();
    };
    let detail = match by {
        GroupBy::Service => owner.service.as_deref(),
        GroupBy::Region => owner.region.as_deref(),
        _ => None,
    };
    match detail {
        Some(detail) => format!("{} / {detail}", owner.name),
        None => owner.name.clone(),
    }
}

#[derive(Default)]
struct Group {
    traffic: Traffic,
    /// Distinct remotes, when the group's remotes are not disjoint from other groups' (sources).
    remote_set: Option<RemoteSet>,
    remote_count: u64,
    owner: Option<String>,
}

impl Group {
    fn remotes(&self) -> u64 {
        self.remote_set
            .as_ref()
            .map_or(self.remote_count, RemoteSet::len)
    }

    fn fold(&mut self, other: Group, universe: usize) {
        self.traffic.add(other.traffic);
        self.remote_count += other.remote_count;
        if let Some(theirs) = other.remote_set {
            match self.remote_set.as_mut() {
                Some(mine) => mine.union_with(&theirs, universe),
                None => self.remote_set = Some(theirs),
            }
        }
    }
}

fn cost(bytes: u64, price: f64) -> f64 {
    bytes as f64 / BYTES_PER_GB as f64 * price
}

impl Report {
    /// Builds the report from aggregated traffic.
    pub fn build(
        data: &Aggregated,
        shape: &ReportShape<'_>,
        access_log: Option<AccessSummary>,
        owner_sources: Vec<SourceSummary>,
    ) -> Report {
        let owner_of = |slot: u32| (slot != UNKNOWN_SLOT).then(|| &data.owners[slot as usize]);
        let universe = data.remotes.len();
        let mut total = Group::default();
        for remote in &data.remotes {
            total.traffic.add(remote.traffic);
            total.remote_count += 1;
        }
        let grand = total.traffic.bytes;
        let finish = |label: String, kind: RowKind, group: &Group, groups: u64| Row {
            group: label,
            kind,
            owner: group.owner.clone(),
            bytes: group.traffic.bytes,
            packets: group.traffic.packets,
            flows: group.traffic.flows,
            remote_ips: group.remotes(),
            cost_usd: cost(group.traffic.bytes, shape.price_per_gb),
            share: if grand == 0 {
                0.0
            } else {
                group.traffic.bytes as f64 / grand as f64
            },
            groups,
        };
        let grouped = |by: GroupBy, top: usize| -> Vec<Row> {
            let mut groups: HashMap<String, Group> = HashMap::new();
            let mut unknown = Group::default();
            if by == GroupBy::Source {
                // Sources share remotes: their distinct remotes are unions of the per-local sets.
                for source in &data.sources {
                    let pod = shape.pods.and_then(|pods| pods.name_of(source.local));
                    let label = pod.map_or_else(|| source.local.to_string(), str::to_owned);
                    let group = groups.entry(label).or_default();
                    group.traffic.add(source.traffic);
                    match &mut group.remote_set {
                        Some(set) => set.union_with(&source.remotes, universe),
                        None => group.remote_set = Some(source.remotes.clone()),
                    }
                }
            } else {
                // Every remote has one owner, so groups of remotes are disjoint and remotes can be counted.
                for remote in &data.remotes {
                    let owner = owner_of(remote.owner_slot);
                    let (label, is_unknown) = match by {
                        GroupBy::Remote => (remote.remote.to_string(), false),
                        _ => (owner_label(owner, by), owner.is_none()),
                    };
                    let group = if is_unknown {
                        &mut unknown
                    } else {
                        groups.entry(label).or_default()
                    };
                    group.traffic.add(remote.traffic);
                    group.remote_count += 1;
                    if by == GroupBy::Remote {
                        group.owner = Some(owner_label(owner, GroupBy::Service));
                    }
                }
            }
            let mut ranked: Vec<(String, Group)> = groups.into_iter().collect();
            ranked.sort_by(|a, b| {
                b.1.traffic
                    .bytes
                    .cmp(&a.1.traffic.bytes)
                    .then_with(|| a.0.cmp(&b.0))
            });
            let mut rows = Vec::new();
            let mut other = Group::default();
            let mut folded = 0u64;
            for (index, (label, group)) in ranked.into_iter().enumerate() {
                if index < top {
                    rows.push(finish(label, RowKind::Group, &group, 1));
                } else {
                    folded += 1;
                    other.fold(group, universe);
                }
            }
            if folded > 0 {
                rows.push(finish(
                    format!("other ({folded} groups)"),
                    RowKind::Other,
                    &other,
                    folded,
                ));
            }
            if unknown.traffic.flows > 0 {
                rows.push(finish(UNKNOWN.to_owned(), RowKind::Unknown, &unknown, 1));
            }
            rows
        };
        let rows = grouped(shape.group_by, shape.top);
        let top_owners = grouped(GroupBy::Owner, BARS_IN_CHARTS);
        let top_sources = grouped(GroupBy::Source, BARS_IN_CHARTS);
        let series = build_series(data, &top_owners);
        let time_range = match (data.first_start, data.last_end) {
            (Some(start), Some(end)) => Some(TimeRange {
                start: rfc3339(start),
                end: rfc3339(end),
                start_unix: start,
                end_unix: end,
            }),
            _ => None,
        };
        Report {
            group_by: shape.group_by,
            price_per_gb: shape.price_per_gb,
            bytes_per_gb: BYTES_PER_GB,
            time_range,
            total: finish("total".into(), RowKind::Total, &total, 1),
            rows,
            top_owners,
            top_sources,
            series,
            input: data.counters.clone(),
            access_savings: access_log
                .as_ref()
                .map(|a| AccessSavings::new(a, shape.price_per_gb)),
            access_log,
            owner_sources,
        }
    }
}

/// Bytes per bucket for the first owners of `top_owners`, everything else folded into `other`.
fn build_series(data: &Aggregated, top_owners: &[Row]) -> Series {
    let Some((low, high)) = data
        .series
        .keys()
        .map(|(_, b)| *b)
        .fold(None, |acc: Option<(i64, i64)>, b| {
            Some(acc.map_or((b, b), |(l, h)| (l.min(b), h.max(b))))
        })
    else {
        return Series {
            bucket_seconds: data.bucket_seconds,
            bucket_starts: Vec::new(),
            lines: Vec::new(),
        };
    };
    let width = (high - low + 1) as usize;
    let named: Vec<&str> = top_owners
        .iter()
        .filter(|row| row.kind == RowKind::Group)
        .take(OWNERS_IN_CHARTS)
        .map(|row| row.group.as_str())
        .collect();
    let mut lines: Vec<SeriesLine> = named
        .iter()
        .map(|name| SeriesLine {
            owner: (*name).to_owned(),
            bytes: vec![0; width],
        })
        .collect();
    let mut other = vec![0u64; width];
    let mut unknown = vec![0u64; width];
    for ((slot, bucket), bytes) in &data.series {
        let index = (bucket - low) as usize;
        let label = owner_label(
            (*slot != UNKNOWN_SLOT).then(|| &data.owners[*slot as usize]),
            GroupBy::Owner,
        );
        let target = if *slot == UNKNOWN_SLOT {
            &mut unknown
        } else {
            match named.iter().position(|n| *n == label) {
                Some(position) => &mut lines[position].bytes,
                None => &mut other,
            }
        };
        target[index] += bytes;
    }
    if other.iter().any(|b| *b > 0) {
        lines.push(SeriesLine {
            owner: "other".into(),
            bytes: other,
        });
    }
    if unknown.iter().any(|b| *b > 0) {
        lines.push(SeriesLine {
            owner: UNKNOWN.into(),
            bytes: unknown,
        });
    }
    Series {
        bucket_seconds: data.bucket_seconds,
        bucket_starts: (low..=high).map(|b| b * data.bucket_seconds).collect(),
        lines,
    }
}
