//! Generated inputs for benchmarks and tests: a default-v2 flow log shaped like a busy NAT gateway's day
//! (tens of thousands of remote addresses, hundreds of pods, millions of distinct (pod, remote) pairs,
//! popularity skewed towards a few CDNs and registries), and range and ASN files of realistic size in the
//! published formats (AWS `ip-ranges.json`, GitHub `meta`, Cloudflare `ips-v4`/`ips-v6`, ip2asn TSV).
//!
//! Deterministic for a given seed; no dependencies beyond the standard library.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::net::is_public;

/// xorshift64*: deterministic and dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A public IPv4 address outside multicast and reserved space.
pub fn public_v4(rng: &mut Rng) -> Ipv4Addr {
    loop {
        let addr = Ipv4Addr::from(rng.next_u64() as u32);
        if is_public(IpAddr::V4(addr)) && (1..224).contains(&addr.octets()[0]) {
            return addr;
        }
    }
}

/// What [`write_range_files`] wrote: the prefixes remotes are drawn from.
pub struct RangeUniverse {
    /// (network, prefix length) of IPv4 cloud and CDN prefixes.
    pub cloud_v4: Vec<(Ipv4Addr, u8)>,
    /// (network, prefix length) of IPv6 cloud prefixes.
    pub cloud_v6: Vec<(Ipv6Addr, u8)>,
    /// Number of prefixes written, all files together (ASN ranges counted as ranges).
    pub prefixes: usize,
}

const AWS_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "sa-east-1",
];
const AWS_SERVICES: &[&str] = &[
    "EC2",
    "S3",
    "CLOUDFRONT",
    "DYNAMODB",
    "ROUTE53_HEALTHCHECKS",
];

fn v4_prefix(rng: &mut Rng, min_len: u8, max_len: u8) -> (Ipv4Addr, u8) {
    let len = min_len + rng.below(u64::from(max_len - min_len + 1)) as u8;
    let addr = u32::from(public_v4(rng));
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (Ipv4Addr::from(addr & mask), len)
}

fn v6_prefix(rng: &mut Rng, min_len: u8, max_len: u8) -> (Ipv6Addr, u8) {
    let len = min_len + rng.below(u64::from(max_len - min_len + 1)) as u8;
    // Inside 2600::/12-ish global unicast space.
    let addr = (0x2600u128 << 112)
        | (u128::from(rng.next_u64()) << 48)
        | u128::from(rng.next_u64() as u16);
    let mask = u128::MAX << (128 - len);
    (Ipv6Addr::from(addr & mask), len)
}

/// Writes `ip-ranges.json` (AWS: `aws_v4` IPv4 prefixes, each also under the `AMAZON` catch-all, and a
/// fifth as many IPv6), `github-meta.json`, `ips-v4`/`ips-v6` (Cloudflare) and `ip2asn-combined.tsv`
/// (`asn_ranges` contiguous IPv4 ranges over the public space plus a tenth as many IPv6, 60,000 AS numbers).
pub fn write_range_files(
    dir: &Path,
    aws_v4: usize,
    asn_ranges: usize,
    seed: u64,
) -> std::io::Result<RangeUniverse> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(seed);
    let mut universe = RangeUniverse {
        cloud_v4: Vec::new(),
        cloud_v6: Vec::new(),
        prefixes: 0,
    };

    let mut aws = String::from(
        r#"{"syncToken":"1714003200","createDate":"2024-04-25-00-00-00","prefixes":["#,
    );
    for i in 0..aws_v4 {
        let (net, len) = v4_prefix(&mut rng, 16, 24);
        let region = AWS_REGIONS[i % AWS_REGIONS.len()];
        let service = AWS_SERVICES[(rng.below(AWS_SERVICES.len() as u64)) as usize];
        for service in ["AMAZON", service] {
            if !aws.ends_with('[') {
                aws.push(',');
            }
            let _ = write!(
                aws,
                r#"{{"ip_prefix":"{net}/{len}","region":"{region}","service":"{service}","network_border_group":"{region}"}}"#
            );
            universe.prefixes += 1;
        }
        universe.cloud_v4.push((net, len));
    }
    aws.push_str(r#"],"ipv6_prefixes":["#);
    for i in 0..aws_v4 / 5 {
        let (net, len) = v6_prefix(&mut rng, 32, 56);
        let region = AWS_REGIONS[i % AWS_REGIONS.len()];
        if !aws.ends_with('[') {
            aws.push(',');
        }
        let _ = write!(
            aws,
            r#"{{"ipv6_prefix":"{net}/{len}","region":"{region}","service":"AMAZON","network_border_group":"{region}"}}"#
        );
        universe.prefixes += 1;
        universe.cloud_v6.push((net, len));
    }
    aws.push_str("]}\n");
    std::fs::write(dir.join("ip-ranges.json"), aws)?;

    let mut github = String::from(r#"{"verifiable_password_authentication":false"#);
    for (key, count) in [
        ("actions", 3000),
        ("packages", 40),
        ("web", 40),
        ("api", 40),
        ("git", 40),
        ("pages", 10),
    ] {
        let _ = write!(github, r#","{key}":["#);
        for i in 0..count {
            let (net, len) = v4_prefix(&mut rng, 20, 28);
            if i > 0 {
                github.push(',');
            }
            let _ = write!(github, r#""{net}/{len}""#);
            universe.cloud_v4.push((net, len));
            universe.prefixes += 1;
        }
        github.push(']');
    }
    github.push_str("}\n");
    std::fs::write(dir.join("github-meta.json"), github)?;

    let mut cloudflare_v4 = String::new();
    for _ in 0..15 {
        let (net, len) = v4_prefix(&mut rng, 13, 22);
        let _ = writeln!(cloudflare_v4, "{net}/{len}");
        universe.cloud_v4.push((net, len));
        universe.prefixes += 1;
    }
    std::fs::write(dir.join("ips-v4"), cloudflare_v4)?;
    let mut cloudflare_v6 = String::new();
    for _ in 0..7 {
        let (net, len) = v6_prefix(&mut rng, 29, 32);
        let _ = writeln!(cloudflare_v6, "{net}/{len}");
        universe.prefixes += 1;
    }
    std::fs::write(dir.join("ips-v6"), cloudflare_v6)?;

    // ip2asn: contiguous CIDR-aligned ranges (as BGP announces them) from 1.0.0.0 to 223.255.255.255, about
    // `asn_ranges` of them, some unrouted (AS 0).
    let mut out = BufWriter::new(std::fs::File::create(dir.join("ip2asn-combined.tsv"))?);
    let first = u64::from(u32::from(Ipv4Addr::new(1, 0, 0, 0)));
    let last = u64::from(u32::from(Ipv4Addr::new(223, 255, 255, 255)));
    let average = ((last - first) / asn_ranges.max(1) as u64).max(1);
    let centre = (32 - (63 - average.leading_zeros()) as i64).clamp(4, 29);
    let mut start = first;
    while start <= last {
        let wanted = (centre - 3 + rng.below(7) as i64).clamp(1, 32) as u32;
        let aligned = 32 - start.trailing_zeros().min(32);
        let mut len = wanted.max(aligned);
        while start + (1u64 << (32 - len)) - 1 > last {
            len += 1;
        }
        let end = start + (1u64 << (32 - len)) - 1;
        let asn = if rng.below(20) == 0 {
            0
        } else {
            1 + rng.below(60_000)
        };
        let (country, org) = if asn == 0 {
            ("None".to_string(), "Not routed".to_string())
        } else {
            (
                ["US", "DE", "NL", "JP", "BR", "IE"][(asn % 6) as usize].to_string(),
                format!("EXAMPLE-NET-{asn} Example Networks {asn}"),
            )
        };
        writeln!(
            out,
            "{}\t{}\t{asn}\t{country}\t{org}",
            Ipv4Addr::from(start as u32),
            Ipv4Addr::from(end as u32)
        )?;
        universe.prefixes += 1;
        start = end + 1;
    }
    let mut base: u128 = 0x2001_0000u128 << 96;
    for _ in 0..asn_ranges / 10 {
        let size = 1u128 << (80 + rng.below(16));
        let asn = 1 + rng.below(60_000);
        writeln!(
            out,
            "{}\t{}\t{asn}\tUS\tEXAMPLE-NET-{asn} Example Networks {asn}",
            Ipv6Addr::from(base),
            Ipv6Addr::from(base + size - 1)
        )?;
        universe.prefixes += 1;
        base += size;
    }
    out.flush()?;
    Ok(universe)
}

/// The shape of a generated flow log.
#[derive(Clone, Copy, Debug)]
pub struct FlowLogShape {
    /// Approximate size of the log in bytes.
    pub bytes: u64,
    pub remotes: usize,
    pub locals: usize,
    pub seed: u64,
}

/// What [`write_flow_log`] wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowLogStats {
    pub bytes: u64,
    pub records: u64,
    /// Distinct (local, remote) pairs among the accepted egress records.
    pub pairs: u64,
}

/// Writes a default-v2 flow log (no header line) of about `shape.bytes`: one NAT gateway's day, records in
/// time order, both directions, popularity skewed (a remote's weight falls with its rank; pods differ in
/// activity), a few percent NODATA, REJECT and internal records. Remotes are drawn from `universe`'s cloud
/// prefixes (about half of them) and from anywhere in the public space (the rest, named by ASN data).
pub fn write_flow_log(
    path: &Path,
    shape: FlowLogShape,
    universe: &RangeUniverse,
) -> std::io::Result<FlowLogStats> {
    let mut rng = Rng::new(shape.seed);
    let remotes: Vec<IpAddr> = (0..shape.remotes.max(1))
        .map(|_| {
            let pick = rng.below(100);
            if pick < 45 && !universe.cloud_v4.is_empty() {
                let (net, len) =
                    universe.cloud_v4[rng.below(universe.cloud_v4.len() as u64) as usize];
                let host = if len >= 32 {
                    0
                } else {
                    rng.next_u64() as u32 & (u32::MAX >> len)
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(net) | host))
            } else if pick < 48 && !universe.cloud_v6.is_empty() {
                let (net, len) =
                    universe.cloud_v6[rng.below(universe.cloud_v6.len() as u64) as usize];
                let host = (u128::from(rng.next_u64()) | 1) & (u128::MAX >> len);
                IpAddr::V6(Ipv6Addr::from(u128::from(net) | host))
            } else {
                IpAddr::V4(public_v4(&mut rng))
            }
        })
        .collect();
    let locals: Vec<Ipv4Addr> = (0..shape.locals.max(1))
        .map(|i| Ipv4Addr::new(10, 1 + (i / 250) as u8, (i % 250) as u8 + 2, 10))
        .collect();
    let interfaces = ["eni-0a1b2c3d4e5f60718", "eni-0f9e8d7c6b5a49382"];
    let day_start: i64 = 1_714_003_200;
    // About 118 bytes a record.
    let expected_records = (shape.bytes / 118).max(1);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut stats = FlowLogStats::default();
    let mut line = String::with_capacity(200);
    let mut pairs = std::collections::HashSet::new();
    while stats.bytes < shape.bytes {
        let start = day_start + (stats.records * 86_400 / expected_records) as i64;
        let end = start + 30 + rng.below(60) as i64;
        let interface = interfaces[rng.below(2) as usize];
        line.clear();
        let kind = rng.below(1000);
        if kind < 25 {
            let _ = writeln!(
                line,
                "2 123456789012 {interface} - - - - - - - {start} {end} - NODATA"
            );
        } else {
            // Popular remotes (CDNs, registries, object stores) take most flows; the long tail is wide.
            let remote_index = (remotes.len() as f64 * rng.unit().powi(3)) as usize;
            let local_index = (locals.len() as f64 * rng.unit().powf(1.5)) as usize;
            let (remote, local) = (remotes[remote_index], locals[local_index]);
            let udp = rng.below(10) == 0;
            let (protocol, remote_port) = if udp { (17, 53) } else { (6, 443) };
            let local_port = 32_768 + rng.below(28_000);
            let bytes = 40 + (rng.unit().powi(4) * 4_000_000.0) as u64;
            let packets = bytes / 1_200 + 1;
            let action = if kind < 35 { "REJECT" } else { "ACCEPT" };
            let (src, dst, sport, dport) = if kind < 60 {
                // Internal traffic between pods.
                let other = locals[rng.below(locals.len() as u64) as usize];
                (IpAddr::V4(local), IpAddr::V4(other), local_port, 8080)
            } else {
                if action == "ACCEPT" {
                    pairs.insert((local_index as u64) << 32 | remote_index as u64);
                }
                if rng.below(2) == 0 {
                    (IpAddr::V4(local), remote, local_port, remote_port)
                } else {
                    (remote, IpAddr::V4(local), remote_port, local_port)
                }
            };
            let _ = writeln!(
                line,
                "2 123456789012 {interface} {src} {dst} {sport} {dport} {protocol} {packets} {bytes} {start} {end} {action} OK"
            );
        }
        out.write_all(line.as_bytes())?;
        stats.bytes += line.len() as u64;
        stats.records += 1;
    }
    out.flush()?;
    stats.pairs = pairs.len() as u64;
    Ok(stats)
}
