//! Which column of a flow-log record holds which field: the default v2 layout, a header line, a custom
//! `--fields` list (`${srcaddr}` or `srcaddr` spellings), or Parquet column names (`pkt_srcaddr`).

use crate::error::{EgressError, Result};

/// Fields wharf reads; every other column is carried past.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    InterfaceId,
    SrcAddr,
    DstAddr,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    PktSrcAddr,
    PktDstAddr,
    Region,
    AzId,
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
}

/// Every field name of VPC flow logs versions 2 to 8, in AWS's spelling.
const KNOWN_FIELDS: &[&str] = &[
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
    "vpc-id",
    "subnet-id",
    "instance-id",
    "tcp-flags",
    "type",
    "pkt-srcaddr",
    "pkt-dstaddr",
    "region",
    "az-id",
    "sublocation-type",
    "sublocation-id",
    "pkt-src-aws-service",
    "pkt-dst-aws-service",
    "flow-direction",
    "traffic-path",
    "ecs-cluster-arn",
    "ecs-cluster-name",
    "ecs-container-instance-arn",
    "ecs-container-instance-id",
    "ecs-container-id",
    "ecs-second-container-id",
    "ecs-service-name",
    "ecs-task-definition-arn",
    "ecs-task-arn",
    "ecs-task-id",
    "reject-reason",
];

/// The default (version 2) format.
pub const DEFAULT_V2_FIELDS: &str =
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

fn field_of(name: &str) -> Option<Field> {
    Some(match name {
        "interface-id" => Field::InterfaceId,
        "srcaddr" => Field::SrcAddr,
        "dstaddr" => Field::DstAddr,
        "packets" => Field::Packets,
        "bytes" => Field::Bytes,
        "start" => Field::Start,
        "end" => Field::End,
        "action" => Field::Action,
        "log-status" => Field::LogStatus,
        "pkt-srcaddr" => Field::PktSrcAddr,
        "pkt-dstaddr" => Field::PktDstAddr,
        "region" => Field::Region,
        "az-id" => Field::AzId,
        "pkt-src-aws-service" => Field::PktSrcAwsService,
        "pkt-dst-aws-service" => Field::PktDstAwsService,
        "flow-direction" => Field::FlowDirection,
        "traffic-path" => Field::TrafficPath,
        _ => return None,
    })
}

/// `${pkt-srcaddr}`, `pkt_srcaddr` and `pkt-srcaddr` all name the same field.
pub fn normalise_field_name(raw: &str) -> String {
    raw.trim()
        .trim_start_matches("${")
        .trim_end_matches('}')
        .replace('_', "-")
        .to_ascii_lowercase()
}

/// Column positions of one flow-log layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    columns: Vec<Option<Field>>,
}

impl Layout {
    /// The layout named by a list of field names; it must contain `srcaddr`, `dstaddr` and `bytes`.
    pub fn from_names<S: AsRef<str>>(names: &[S], origin: &str) -> Result<Self> {
        let names: Vec<String> = names
            .iter()
            .map(|n| normalise_field_name(n.as_ref()))
            .collect();
        let columns: Vec<Option<Field>> = names.iter().map(|n| field_of(n)).collect();
        for required in [Field::SrcAddr, Field::DstAddr, Field::Bytes] {
            if !columns.contains(&Some(required)) {
                return Err(EgressError::Layout {
                    origin: origin.to_owned(),
                    detail: format!(
                        "it lacks `{}`; wharf needs srcaddr, dstaddr and bytes (give the file's layout with --fields)",
                        required.name()
                    ),
                });
            }
        }
        Ok(Layout { columns })
    }

    /// Parses a space-separated field list such as `--fields` or a header line.
    pub fn parse(list: &str, origin: &str) -> Result<Self> {
        let names: Vec<&str> = list
            .split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .collect();
        Self::from_names(&names, origin)
    }

    /// The default v2 layout.
    pub fn default_v2() -> Self {
        Self::parse(DEFAULT_V2_FIELDS, "default format").unwrap_or_else(|_| Layout {
            columns: Vec::new(),
        })
    }

    /// Whether a line is a header (field names) rather than a record.
    pub fn is_header_line(line: &str) -> bool {
        let mut tokens = line.split_ascii_whitespace().peekable();
        if tokens
            .peek()
            .is_none_or(|t| t.starts_with(|c: char| c.is_ascii_digit()))
        {
            return false;
        }
        tokens.all(|t| KNOWN_FIELDS.contains(&normalise_field_name(t).as_str()))
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Whether the layout has packet-level addresses or AWS service names, whose meaning (NAT duplicates, the
    /// service named for an otherwise unknown address) depends on the order records are read in.
    pub fn has_packet_fields(&self) -> bool {
        self.columns.iter().flatten().any(|field| {
            matches!(
                field,
                Field::PktSrcAddr
                    | Field::PktDstAddr
                    | Field::PktSrcAwsService
                    | Field::PktDstAwsService
            )
        })
    }

    /// The field at each column, `None` for columns wharf does not read.
    pub fn columns(&self) -> &[Option<Field>] {
        &self.columns
    }
}

impl Field {
    /// AWS's name of the field.
    pub fn name(self) -> &'static str {
        match self {
            Field::InterfaceId => "interface-id",
            Field::SrcAddr => "srcaddr",
            Field::DstAddr => "dstaddr",
            Field::Packets => "packets",
            Field::Bytes => "bytes",
            Field::Start => "start",
            Field::End => "end",
            Field::Action => "action",
            Field::LogStatus => "log-status",
            Field::PktSrcAddr => "pkt-srcaddr",
            Field::PktDstAddr => "pkt-dstaddr",
            Field::Region => "region",
            Field::AzId => "az-id",
            Field::PktSrcAwsService => "pkt-src-aws-service",
            Field::PktDstAwsService => "pkt-dst-aws-service",
            Field::FlowDirection => "flow-direction",
            Field::TrafficPath => "traffic-path",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_are_normalised() {
        let layout = Layout::parse(
            "${version} ${srcaddr} ${dstaddr} ${pkt_srcaddr} ${bytes}",
            "t",
        )
        .unwrap();
        assert_eq!(layout.width(), 5);
        assert_eq!(layout.columns()[3], Some(Field::PktSrcAddr));
    }

    #[test]
    fn headers_are_told_from_records() {
        assert!(Layout::is_header_line(DEFAULT_V2_FIELDS));
        assert!(Layout::is_header_line(
            "version srcaddr dstaddr pkt-srcaddr bytes flow-direction traffic-path"
        ));
        assert!(!Layout::is_header_line(
            "2 123456789012 eni-1 10.0.0.1 1.1.1.1 1 2 6 1 100 1 2 ACCEPT OK"
        ));
        assert!(!Layout::is_header_line("version srcaddr nonsense"));
    }

    #[test]
    fn layouts_without_addresses_are_refused() {
        let err = Layout::parse("version packets", "--fields")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--fields") && err.contains("srcaddr"), "{err}");
    }
}
