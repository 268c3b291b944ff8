//! Parsers for the range files that cloud and CDN providers publish. Each turns one document into prefixes
//! with owner, service and region; none of them decides priority beyond the rank of identical prefixes.

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use super::{Owner, RangeRecord};

/// A provider's catch-all range (AWS `AMAZON`, Azure `AzureCloud`, Google's goog.json).
pub const RANK_CATCH_ALL: u8 = 10;
/// A catch-all range scoped to one region.
pub const RANK_REGIONAL: u8 = 20;
/// A range named for one service.
pub const RANK_SERVICE: u8 = 30;
/// A CDN's own range.
pub const RANK_CDN: u8 = 40;
/// GitHub's ranges: they sit inside Azure's and say more.
pub const RANK_GITHUB: u8 = 50;

/// Range file formats recognised in a `--ranges` directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudFormat {
    Aws,
    GoogleCloud,
    Google,
    Azure,
    GitHub,
    CloudflareText,
    CloudflareApi,
    Fastly,
    Oracle,
}

impl CloudFormat {
    /// Human name used in summaries and errors.
    pub fn label(self) -> &'static str {
        match self {
            CloudFormat::Aws => "AWS ip-ranges",
            CloudFormat::GoogleCloud => "Google Cloud cloud.json",
            CloudFormat::Google => "Google goog.json",
            CloudFormat::Azure => "Azure Service Tags",
            CloudFormat::GitHub => "GitHub meta",
            CloudFormat::CloudflareText => "Cloudflare ips list",
            CloudFormat::CloudflareApi => "Cloudflare API ips",
            CloudFormat::Fastly => "Fastly public-ip-list",
            CloudFormat::Oracle => "Oracle public_ip_ranges",
        }
    }

    /// Identifies a JSON range document by its keys.
    pub fn detect_json(doc: &Value) -> Option<Self> {
        let object = doc.as_object()?;
        let first_prefix = object
            .get("prefixes")
            .and_then(|p| p.as_array())
            .and_then(|p| p.first());
        if let Some(prefix) = first_prefix {
            if prefix.get("ip_prefix").is_some() || object.contains_key("ipv6_prefixes") {
                return Some(CloudFormat::Aws);
            }
            if prefix.get("ipv4Prefix").is_some() || prefix.get("ipv6Prefix").is_some() {
                let scoped = prefix.get("scope").is_some();
                return Some(if scoped {
                    CloudFormat::GoogleCloud
                } else {
                    CloudFormat::Google
                });
            }
        }
        if object.contains_key("values") && object.contains_key("changeNumber") {
            return Some(CloudFormat::Azure);
        }
        if object.contains_key("verifiable_password_authentication")
            || (object.contains_key("web") && object.contains_key("api"))
        {
            return Some(CloudFormat::GitHub);
        }
        if object.contains_key("addresses") && object.contains_key("ipv6_addresses") {
            return Some(CloudFormat::Fastly);
        }
        if object
            .get("regions")
            .and_then(|r| r.as_array())
            .is_some_and(|r| r.iter().any(|x| x.get("cidrs").is_some()))
        {
            return Some(CloudFormat::Oracle);
        }
        if object
            .get("result")
            .is_some_and(|r| r.get("ipv4_cidrs").is_some())
        {
            return Some(CloudFormat::CloudflareApi);
        }
        None
    }

    /// Parses a document of this format; `source` names the file in the resulting owners.
    pub fn parse(self, text: &str, source: &str) -> Result<Vec<RangeRecord>, String> {
        if self == CloudFormat::CloudflareText {
            return parse_cidr_lines(text, source);
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match self {
            CloudFormat::CloudflareText => parse_cidr_lines(text, source),
            CloudFormat::Aws => parse_aws(doc, source),
            CloudFormat::GoogleCloud | CloudFormat::Google => parse_google(doc, source),
            CloudFormat::Azure => parse_azure(doc, source),
            CloudFormat::GitHub => parse_github(&doc, source),
            CloudFormat::CloudflareApi => parse_cloudflare_api(&doc, source),
            CloudFormat::Fastly => parse_fastly(&doc, source),
            CloudFormat::Oracle => parse_oracle(doc, source),
        }
    }
}

fn owner(name: &str, service: Option<&str>, region: Option<&str>, source: &str) -> Owner {
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
    Owner {
        name: name.into(),
        service: non_empty(service),
        region: non_empty(region),
        asn: None,
        source: source.into(),
    }
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not a CIDR prefix"))
}

#[derive(Deserialize)]
struct AwsDoc {
    #[serde(default)]
    prefixes: Vec<AwsPrefix>,
    #[serde(default)]
    ipv6_prefixes: Vec<AwsPrefix>,
}

#[derive(Deserialize)]
struct AwsPrefix {
    #[serde(alias = "ipv6_prefix")]
    ip_prefix: String,
    region: String,
    service: String,
}

fn parse_aws(doc: Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let doc: AwsDoc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    doc.prefixes
        .into_iter()
        .chain(doc.ipv6_prefixes)
        .map(|p| {
            let catch_all = p.service == "AMAZON";
            Ok(RangeRecord {
                net: parse_net(&p.ip_prefix)?,
                owner: owner("AWS", Some(&p.service), Some(&p.region), source),
                rank: if catch_all {
                    RANK_CATCH_ALL
                } else {
                    RANK_SERVICE
                },
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct GoogleDoc {
    prefixes: Vec<GooglePrefix>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GooglePrefix {
    ipv4_prefix: Option<String>,
    ipv6_prefix: Option<String>,
    service: Option<String>,
    scope: Option<String>,
}

fn parse_google(doc: Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let doc: GoogleDoc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    doc.prefixes
        .into_iter()
        .filter_map(|p| {
            let prefix = p.ipv4_prefix.or(p.ipv6_prefix)?;
            Some((prefix, p.service, p.scope))
        })
        .map(|(prefix, service, scope)| {
            let (name, rank) = if scope.is_some() {
                ("Google Cloud", RANK_REGIONAL)
            } else {
                ("Google", RANK_CATCH_ALL)
            };
            Ok(RangeRecord {
                net: parse_net(&prefix)?,
                owner: owner(
                    name,
                    service.as_deref().filter(|s| *s != "Google Cloud"),
                    scope.as_deref(),
                    source,
                ),
                rank,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct AzureDoc {
    values: Vec<AzureTag>,
}

#[derive(Deserialize)]
struct AzureTag {
    name: String,
    properties: AzureProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureProperties {
    #[serde(default)]
    region: String,
    #[serde(default)]
    system_service: String,
    #[serde(default)]
    address_prefixes: Vec<String>,
}

fn parse_azure(doc: Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let doc: AzureDoc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for tag in doc.values {
        let props = tag.properties;
        let base_name = tag.name.split('.').next().unwrap_or(&tag.name);
        let regional = !props.region.is_empty();
        let (service, rank) = if base_name == "AzureCloud" {
            (
                None,
                if regional {
                    RANK_REGIONAL
                } else {
                    RANK_CATCH_ALL
                },
            )
        } else {
            let service = if props.system_service.is_empty() {
                base_name
            } else {
                &props.system_service
            };
            (Some(service), RANK_SERVICE + u8::from(regional))
        };
        for prefix in &props.address_prefixes {
            records.push(RangeRecord {
                net: parse_net(prefix)?,
                owner: owner("Azure", service, Some(&props.region), source),
                rank,
            });
        }
    }
    Ok(records)
}

/// GitHub meta keys, most telling first: a prefix listed under several keys is named after the earliest.
const GITHUB_KEY_PREFERENCE: &[&str] = &[
    "actions",
    "actions_macos",
    "packages",
    "pages",
    "copilot",
    "codespaces",
    "dependabot",
    "importer",
    "github_enterprise_importer",
    "hooks",
    "web",
    "api",
    "git",
];

fn parse_github(doc: &Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let object = doc.as_object().ok_or("expected a JSON object")?;
    let mut records = Vec::new();
    for (key, value) in object {
        let Some(items) = value.as_array() else {
            continue;
        };
        let prefixes: Vec<IpNet> = items
            .iter()
            .filter_map(|v| v.as_str())
            .filter_map(|s| parse_net(s).ok())
            .collect();
        if prefixes.is_empty() || prefixes.len() != items.len() {
            continue;
        }
        let preference = GITHUB_KEY_PREFERENCE
            .iter()
            .position(|k| k == key)
            .map_or(0, |i| GITHUB_KEY_PREFERENCE.len() - i);
        for net in prefixes {
            records.push(RangeRecord {
                net,
                owner: owner("GitHub", Some(key), None, source),
                rank: RANK_GITHUB + preference as u8,
            });
        }
    }
    Ok(records)
}

fn parse_cidr_lines(text: &str, source: &str) -> Result<Vec<RangeRecord>, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            Ok(RangeRecord {
                net: parse_net(line)?,
                owner: owner("Cloudflare", None, None, source),
                rank: RANK_CDN,
            })
        })
        .collect()
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_cloudflare_api(doc: &Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let result = doc.get("result").ok_or("missing `result`")?;
    let mut lines = string_list(result.get("ipv4_cidrs"));
    lines.extend(string_list(result.get("ipv6_cidrs")));
    parse_cidr_lines(&lines.join("\n"), source)
}

fn parse_fastly(doc: &Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let mut prefixes = string_list(doc.get("addresses"));
    prefixes.extend(string_list(doc.get("ipv6_addresses")));
    prefixes
        .iter()
        .map(|p| {
            Ok(RangeRecord {
                net: parse_net(p)?,
                owner: owner("Fastly", None, None, source),
                rank: RANK_CDN,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct OracleDoc {
    regions: Vec<OracleRegion>,
}

#[derive(Deserialize)]
struct OracleRegion {
    region: String,
    cidrs: Vec<OracleCidr>,
}

#[derive(Deserialize)]
struct OracleCidr {
    cidr: String,
    #[serde(default)]
    tags: Vec<String>,
}

fn parse_oracle(doc: Value, source: &str) -> Result<Vec<RangeRecord>, String> {
    let doc: OracleDoc = serde_json::from_value(doc).map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    for region in doc.regions {
        for cidr in region.cidrs {
            let service = cidr.tags.join("+");
            records.push(RangeRecord {
                net: parse_net(&cidr.cidr)?,
                owner: owner("Oracle Cloud", Some(&service), Some(&region.region), source),
                rank: RANK_SERVICE,
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (CloudFormat, Vec<RangeRecord>) {
        let doc: Value = serde_json::from_str(text).unwrap();
        let format = CloudFormat::detect_json(&doc).expect("recognised");
        (format, format.parse(text, "test").unwrap())
    }

    #[test]
    fn aws_marks_the_catch_all_lower_than_services() {
        let (format, records) = parse(
            r#"{"syncToken":"1","createDate":"2024-01-01-00-00-00","prefixes":[
              {"ip_prefix":"3.5.0.0/19","region":"us-east-1","service":"AMAZON","network_border_group":"us-east-1"},
              {"ip_prefix":"3.5.0.0/19","region":"us-east-1","service":"S3","network_border_group":"us-east-1"}],
              "ipv6_prefixes":[{"ipv6_prefix":"2600:1f18::/33","region":"us-east-1","service":"EC2","network_border_group":"us-east-1"}]}"#,
        );
        assert_eq!(format, CloudFormat::Aws);
        assert_eq!(records.len(), 3);
        assert!(records[1].rank > records[0].rank);
        assert_eq!(records[2].owner.service.as_deref(), Some("EC2"));
    }

    #[test]
    fn google_cloud_and_goog_are_told_apart() {
        let (format, records) = parse(
            r#"{"prefixes":[{"ipv4Prefix":"34.1.208.0/20","service":"Google Cloud","scope":"africa-south1"}]}"#,
        );
        assert_eq!(format, CloudFormat::GoogleCloud);
        assert_eq!(records[0].owner.region.as_deref(), Some("africa-south1"));
        let (format, records) =
            parse(r#"{"prefixes":[{"ipv4Prefix":"8.8.4.0/24"},{"ipv6Prefix":"2001:4860::/32"}]}"#);
        assert_eq!(format, CloudFormat::Google);
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn azure_prefers_service_tags_over_azurecloud() {
        let (format, records) = parse(
            r#"{"changeNumber":1,"cloud":"Public","values":[
              {"name":"AzureCloud.westeurope","id":"AzureCloud.westeurope","properties":{"region":"westeurope","systemService":"","addressPrefixes":["20.38.0.0/16"]}},
              {"name":"Storage.WestEurope","id":"Storage.WestEurope","properties":{"region":"westeurope","systemService":"AzureStorage","addressPrefixes":["20.38.0.0/16"]}}]}"#,
        );
        assert_eq!(format, CloudFormat::Azure);
        assert!(records[1].rank > records[0].rank);
        assert_eq!(records[1].owner.service.as_deref(), Some("AzureStorage"));
    }

    #[test]
    fn github_keys_become_services_and_non_prefix_keys_are_skipped() {
        let (format, records) = parse(
            r#"{"verifiable_password_authentication":false,"ssh_keys":["ssh-ed25519 AAAA"],
                "web":["140.82.112.0/20"],"api":["140.82.112.0/20"],"actions":["4.148.0.0/16"],"domains":{"website":["github.com"]}}"#,
        );
        assert_eq!(format, CloudFormat::GitHub);
        assert_eq!(records.len(), 3);
        let web = records
            .iter()
            .find(|r| r.owner.service.as_deref() == Some("web"))
            .unwrap();
        let api = records
            .iter()
            .find(|r| r.owner.service.as_deref() == Some("api"))
            .unwrap();
        assert!(web.rank > api.rank);
    }

    #[test]
    fn fastly_oracle_and_cloudflare() {
        let (format, records) =
            parse(r#"{"addresses":["151.101.0.0/16"],"ipv6_addresses":["2a04:4e40::/32"]}"#);
        assert_eq!((format, records.len()), (CloudFormat::Fastly, 2));
        let (format, records) = parse(
            r#"{"last_updated_timestamp":"x","regions":[{"region":"us-phoenix-1","cidrs":[{"cidr":"129.146.0.0/21","tags":["OCI"]}]}]}"#,
        );
        assert_eq!(format, CloudFormat::Oracle);
        assert_eq!(records[0].owner.region.as_deref(), Some("us-phoenix-1"));
        let records = CloudFormat::CloudflareText
            .parse("173.245.48.0/20\n\n2400:cb00::/32\n", "ips-v4")
            .unwrap();
        assert_eq!(records.len(), 2);
        assert!(CloudFormat::CloudflareText
            .parse("not a prefix", "x")
            .is_err());
    }
}
