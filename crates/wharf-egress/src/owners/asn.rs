//! Parsers for ASN data: ip2asn TSV (address ranges with AS number and description), pyasn `.dat`
//! (prefix and AS number) with its AS-names JSON, and MaxMind-format ASN databases (`.mmdb`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use serde::Deserialize;

use super::AsnRecord;

/// ip2asn lines: `range_start<TAB>range_end<TAB>AS_number<TAB>country_code<TAB>AS_description`.
/// AS number 0 marks unrouted space and is skipped.
pub fn parse_ip2asn(text: &str, source: &str) -> Result<Vec<AsnRecord>, String> {
    let source: Arc<str> = source.into();
    let mut records = Vec::new();
    // Consecutive lines often name the same organisation: share its text.
    let mut last_org: Option<Arc<str>> = None;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(start), Some(end), Some(asn), Some(_country), rest) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(format!(
                "line {}: expected 5 tab-separated fields",
                index + 1
            ));
        };
        let bad = |what: &str| format!("line {}: invalid {what}", index + 1);
        let start: IpAddr = start.trim().parse().map_err(|_| bad("range start"))?;
        let end: IpAddr = end.trim().parse().map_err(|_| bad("range end"))?;
        let asn: u32 = asn.trim().parse().map_err(|_| bad("AS number"))?;
        if asn == 0 {
            continue;
        }
        let org = rest
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "Not routed")
            .map(|text| match &last_org {
                Some(shared) if **shared == *text => shared.clone(),
                _ => {
                    let shared: Arc<str> = text.into();
                    last_org = Some(shared.clone());
                    shared
                }
            });
        let mut push = |net: IpNet| {
            records.push(AsnRecord {
                net,
                asn,
                org: org.clone(),
                source: source.clone(),
            })
        };
        match (start, end) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                Ipv4Subnets::new(a, b, 0).for_each(|n| push(IpNet::V4(n)))
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                Ipv6Subnets::new(a, b, 0).for_each(|n| push(IpNet::V6(n)))
            }
            _ => return Err(bad("range (start and end are of different families)")),
        }
    }
    Ok(records)
}

/// pyasn `.dat` lines: `prefix/len<TAB>asn`; lines starting with `;` are comments.
pub fn parse_pyasn(text: &str, source: &str) -> Result<Vec<AsnRecord>, String> {
    let source: Arc<str> = source.into();
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(prefix), Some(asn)) = (fields.next(), fields.next()) else {
            return Err(format!("line {}: expected `prefix<TAB>asn`", index + 1));
        };
        let net: IpNet = prefix
            .parse()
            .map_err(|_| format!("line {}: invalid prefix `{prefix}`", index + 1))?;
        // Prefixes announced by an AS set look like `{1,2}`; the first member names it.
        let asn: u32 = asn
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("line {}: invalid AS number `{asn}`", index + 1))?;
        records.push(AsnRecord {
            net,
            asn,
            org: None,
            source: source.clone(),
        });
    }
    Ok(records)
}

/// Whether a JSON document is an AS-names map (`{"13335": "CLOUDFLARENET - Cloudflare, Inc., US"}`).
pub fn is_as_names(doc: &serde_json::Value) -> bool {
    doc.as_object().is_some_and(|o| {
        !o.is_empty()
            && o.iter()
                .take(20)
                .all(|(k, v)| k.parse::<u32>().is_ok() && v.is_string())
    })
}

/// Parses an AS-names map.
pub fn parse_as_names(doc: serde_json::Value) -> Result<HashMap<u32, String>, String> {
    let names: HashMap<String, String> = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    names
        .into_iter()
        .map(|(asn, name)| {
            asn.parse::<u32>()
                .map(|asn| (asn, name))
                .map_err(|_| format!("key `{asn}` is not an AS number"))
        })
        .collect()
}

#[derive(Deserialize)]
struct MmdbAsn {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
}

/// Reads every network of a MaxMind-format ASN database.
pub fn parse_mmdb(bytes: Vec<u8>, source: &str) -> Result<Vec<AsnRecord>, String> {
    let source: Arc<str> = source.into();
    let reader = maxminddb::Reader::from_source(bytes).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for item in reader
        .networks(Default::default())
        .map_err(|e| e.to_string())?
    {
        let item = item.map_err(|e| e.to_string())?;
        let Some(data) = item.decode::<MmdbAsn>().map_err(|e| e.to_string())? else {
            continue;
        };
        let Some(asn) = data.autonomous_system_number else {
            continue;
        };
        let network = item.network().map_err(|e| e.to_string())?;
        let net = match (network.ip(), network.prefix()) {
            // IPv4 networks of an IPv6 database come out in the IPv4-compatible block `::a.b.c.d/96+`.
            (IpAddr::V6(v6), len) if len >= 96 && u128::from(v6) <= u128::from(u32::MAX) => {
                IpNet::new(IpAddr::V4((u128::from(v6) as u32).into()), len - 96)
            }
            (ip, len) => IpNet::new(ip, len),
        }
        .map_err(|e| e.to_string())?;
        records.push(AsnRecord {
            net,
            asn,
            org: data.autonomous_system_organization.map(Arc::from),
            source: source.clone(),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip2asn_ranges_become_minimal_prefixes() {
        let text = "1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
                    1.0.4.0\t1.0.6.255\t38803\tAU\tGTELECOM-AUSTRALIA\n2001:200::\t2001:200:ffff:ffff:ffff:ffff:ffff:ffff\t2500\tJP\tWIDE-BB\n";
        let records = parse_ip2asn(text, "t").unwrap();
        let nets: Vec<String> = records.iter().map(|r| r.net.to_string()).collect();
        assert_eq!(
            nets,
            ["1.0.0.0/24", "1.0.4.0/23", "1.0.6.0/24", "2001:200::/32"]
        );
        assert_eq!(records[0].org.as_deref(), Some("CLOUDFLARENET"));
        assert!(parse_ip2asn("1.0.0.0\tx\t1\tUS\tA\n", "t").is_err());
    }

    #[test]
    fn pyasn_dat_and_names() {
        let records = parse_pyasn("; IP-ASN32-DAT file\n; Original file : x\n1.0.0.0/24\t13335\n8.8.8.0/24\t{15169,36040}\n", "t").unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].asn, 15169);
        let doc: serde_json::Value =
            serde_json::from_str(r#"{"13335":"CLOUDFLARENET - Cloudflare, Inc., US"}"#).unwrap();
        assert!(is_as_names(&doc));
        assert_eq!(
            parse_as_names(doc).unwrap()[&13335],
            "CLOUDFLARENET - Cloudflare, Inc., US"
        );
    }
}
