//! One flow-log record, parsed from the text columns of any layout; `-` means absent.

use std::net::IpAddr;

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
                record.srcaddr = Some(value.parse().map_err(|_| bad("an IP address"))?)
            }
            Field::DstAddr => {
                record.dstaddr = Some(value.parse().map_err(|_| bad("an IP address"))?)
            }
            Field::PktSrcAddr => {
                record.pkt_srcaddr = Some(value.parse().map_err(|_| bad("an IP address"))?)
            }
            Field::PktDstAddr => {
                record.pkt_dstaddr = Some(value.parse().map_err(|_| bad("an IP address"))?)
            }
            Field::Packets => record.packets = Some(value.parse().map_err(|_| bad("a count"))?),
            Field::Bytes => record.bytes = Some(value.parse().map_err(|_| bad("a byte count"))?),
            Field::Start => record.start = Some(value.parse().map_err(|_| bad("a Unix time"))?),
            Field::End => record.end = Some(value.parse().map_err(|_| bad("a Unix time"))?),
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
}
