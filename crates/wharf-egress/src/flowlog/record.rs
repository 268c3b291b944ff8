//! One flow-log record, parsed from the text columns of any layout; `-` means absent.

use std::net::{IpAddr, Ipv4Addr};

use super::layout::{Field, Layout};

/// The fields of one record that wharf uses; all optional because any of them may be `-`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowRecord<'a> {
    pub interface_id: Option<&'a str>,
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    pub pkt_srcaddr: Option<IpAddr>,
    pub pkt_dstaddr: Option<IpAddr>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub action: Option<&'a str>,
    pub log_status: Option<&'a str>,
    pub region: Option<&'a str>,
    pub az_id: Option<&'a str>,
    pub pkt_src_aws_service: Option<&'a str>,
    pub pkt_dst_aws_service: Option<&'a str>,
    pub flow_direction: Option<&'a str>,
    pub traffic_path: Option<&'a str>,
}

/// Parses the columns of one record; the error says which field held what.
pub fn parse_columns<'a>(
    layout: &Layout,
    columns: impl Iterator<Item = &'a str>,
) -> Result<FlowRecord<'a>, String> {
    let mut record = FlowRecord::default();
    let mut count = 0;
    for (value, field) in columns.zip(layout.columns().iter().chain(std::iter::repeat(&None))) {
        count += 1;
        let Some(field) = field else { continue };
        if value == "-" {
            continue;
        }
        let bad = |kind: &str| format!("field `{}`: `{value}` is not {kind}", field.name());
        match field {
            Field::SrcAddr => {
                record.srcaddr = Some(parse_ip(value).ok_or_else(|| bad("an IP address"))?)
            }
            Field::DstAddr => {
                record.dstaddr = Some(parse_ip(value).ok_or_else(|| bad("an IP address"))?)
            }
            Field::PktSrcAddr => {
                record.pkt_srcaddr = Some(parse_ip(value).ok_or_else(|| bad("an IP address"))?)
            }
            Field::PktDstAddr => {
                record.pkt_dstaddr = Some(parse_ip(value).ok_or_else(|| bad("an IP address"))?)
            }
            Field::Packets => {
                record.packets = Some(parse_u64(value).ok_or_else(|| bad("a count"))?)
            }
            Field::Bytes => {
                record.bytes = Some(parse_u64(value).ok_or_else(|| bad("a byte count"))?)
            }
            Field::Start => {
                record.start = Some(parse_i64(value).ok_or_else(|| bad("a Unix time"))?)
            }
            Field::End => record.end = Some(parse_i64(value).ok_or_else(|| bad("a Unix time"))?),
            Field::InterfaceId => record.interface_id = Some(value),
            Field::Action => record.action = Some(value),
            Field::LogStatus => record.log_status = Some(value),
            Field::Region => record.region = Some(value),
            Field::AzId => record.az_id = Some(value),
            Field::PktSrcAwsService => record.pkt_src_aws_service = Some(value),
            Field::PktDstAwsService => record.pkt_dst_aws_service = Some(value),
            Field::FlowDirection => record.flow_direction = Some(value),
            Field::TrafficPath => record.traffic_path = Some(value),
        }
    }
    if count != layout.width() {
        return Err(format!("expected {} fields, found {count}", layout.width()));
    }
    Ok(record)
}

/// An address as `str::parse` reads it; dotted-quad IPv4 (the common case) without the generic parser.
#[inline]
fn parse_ip(text: &str) -> Option<IpAddr> {
    fast_ipv4(text.as_bytes())
        .map(IpAddr::V4)
        .or_else(|| text.parse().ok())
}

/// Four decimal octets of one to three digits, no leading zeros, each at most 255; anything else is left to
/// the standard parser (which then decides), so both always agree.
#[inline]
fn fast_ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut index = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &b in bytes {
        if b.is_ascii_digit() {
            if digits == 1 && value == 0 {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
            digits += 1;
            if digits > 3 || value > 255 {
                return None;
            }
        } else if b == b'.' && digits > 0 && index < 3 {
            octets[index] = value as u8;
            index += 1;
            value = 0;
            digits = 0;
        } else {
            return None;
        }
    }
    if index != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// A count as `str::parse::<u64>` reads it, with a fast path for plain digits.
#[inline]
fn parse_u64(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if (1..=19).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) {
        return Some(bytes.iter().fold(0u64, |n, b| n * 10 + u64::from(b - b'0')));
    }
    text.parse().ok()
}

/// A time as `str::parse::<i64>` reads it, with a fast path for plain digits.
#[inline]
fn parse_i64(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if (1..=18).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) {
        return Some(bytes.iter().fold(0i64, |n, b| n * 10 + i64::from(b - b'0')));
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_record_with_absent_values() {
        let layout = Layout::default_v2();
        let line = "2 123456789012 eni-0a1 10.0.1.5 203.0.113.9 44321 443 6 12 4096 1700000000 1700000060 ACCEPT OK";
        let record = parse_columns(&layout, line.split_ascii_whitespace()).unwrap();
        assert_eq!(record.bytes, Some(4096));
        assert_eq!(record.dstaddr, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(record.log_status, Some("OK"));
        let nodata = "2 123456789012 eni-0a1 - - - - - - - 1700000000 1700000060 - NODATA";
        let record = parse_columns(&layout, nodata.split_ascii_whitespace()).unwrap();
        assert_eq!((record.bytes, record.log_status), (None, Some("NODATA")));
    }

    #[test]
    fn errors_name_the_field() {
        let layout = Layout::default_v2();
        let err = parse_columns(
            &layout,
            "2 1 eni 10.0.0.1 x 1 2 6 1 100 1 2 ACCEPT OK".split(' '),
        )
        .unwrap_err();
        assert!(err.contains("dstaddr"), "{err}");
        let err = parse_columns(&layout, "2 1 eni".split(' ')).unwrap_err();
        assert!(err.contains("expected 14 fields, found 3"), "{err}");
    }

    #[test]
    fn fast_parsers_agree_with_the_standard_ones() {
        for text in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            ".1.2.3",
            "1.2.3.4 ",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "",
            "1.2.3.04",
            "10.0.0.1",
            "1000.1.1.1",
            "a.b.c.d",
        ] {
            assert_eq!(parse_ip(text), text.parse::<IpAddr>().ok(), "{text:?}");
        }
        for text in [
            "0",
            "42",
            "+5",
            "-5",
            "18446744073709551615",
            "18446744073709551616",
            "",
            "1x",
            "9999999999999999999",
            "00012",
        ] {
            assert_eq!(parse_u64(text), text.parse::<u64>().ok(), "{text:?}");
            assert_eq!(parse_i64(text), text.parse::<i64>().ok(), "{text:?}");
        }
    }
}
