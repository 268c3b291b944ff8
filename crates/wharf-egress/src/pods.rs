//! Local source addresses to pod names, from a `kubectl get pods -A -o json` dump. Pods on the host network
//! share their node's address, so that address is named after the node instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::error::{EgressError, Result};
use crate::source_file::read_plain;

#[derive(Deserialize)]
struct PodList {
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: PodMetadata,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize)]
struct PodMetadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    host_network: bool,
    #[serde(default)]
    node_name: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pod_ips: Vec<PodIp>,
    #[serde(default, rename = "hostIP")]
    host_ip: Option<String>,
}

#[derive(Deserialize)]
struct PodIp {
    ip: String,
}

/// Address → `namespace/pod` (or `node/<name>` for host-network addresses).
#[derive(Debug, Default)]
pub struct PodNames {
    names: HashMap<IpAddr, String>,
}

impl PodNames {
    /// Loads a `kubectl get pods -o json` dump.
    pub fn load(path: &Path) -> Result<Self> {
        let content = read_plain(path)?;
        Self::parse(&content).map_err(|detail| EgressError::PodsFile {
            path: path.into(),
            detail,
        })
    }

    fn parse(content: &[u8]) -> Result<Self, String> {
        let list: PodList = serde_json::from_slice(content).map_err(|e| e.to_string())?;
        let mut names = HashMap::new();
        let mut nodes = HashMap::new();
        for pod in list.items {
            if pod.spec.host_network {
                if let (Some(ip), Some(node)) =
                    (pod.status.host_ip.as_deref(), pod.spec.node_name.as_deref())
                {
                    if let Ok(addr) = ip.parse::<IpAddr>() {
                        nodes.insert(addr, format!("node/{node}"));
                    }
                }
                continue;
            }
            let name = match &pod.metadata.namespace {
                Some(ns) => format!("{ns}/{}", pod.metadata.name),
                None => pod.metadata.name.clone(),
            };
            let addresses = pod
                .status
                .pod_ips
                .iter()
                .map(|p| p.ip.as_str())
                .chain(pod.status.pod_ip.as_deref());
            for address in addresses {
                if let Ok(addr) = address.parse::<IpAddr>() {
                    names.insert(addr, name.clone());
                }
            }
        }
        for (addr, node) in nodes {
            names.entry(addr).or_insert(node);
        }
        Ok(PodNames { names })
    }

    /// The pod (or node) behind a local address.
    pub fn name_of(&self, addr: IpAddr) -> Option<&str> {
        self.names.get(&addr).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_host_network_nodes() {
        let dump = br#"{"apiVersion":"v1","kind":"List","items":[
          {"metadata":{"name":"runner-abc","namespace":"ci"},"spec":{"nodeName":"ip-10-0-1-9"},
           "status":{"podIP":"10.0.1.23","podIPs":[{"ip":"10.0.1.23"},{"ip":"fd00::23"}],"hostIP":"10.0.1.9"}},
          {"metadata":{"name":"aws-node-x","namespace":"kube-system"},"spec":{"hostNetwork":true,"nodeName":"ip-10-0-1-9"},
           "status":{"podIP":"10.0.1.9","hostIP":"10.0.1.9"}},
          {"metadata":{"name":"pending","namespace":"ci"},"spec":{},"status":{}}]}"#;
        let pods = PodNames::parse(dump).unwrap();
        assert_eq!(
            pods.name_of("10.0.1.23".parse().unwrap()),
            Some("ci/runner-abc")
        );
        assert_eq!(
            pods.name_of("fd00::23".parse().unwrap()),
            Some("ci/runner-abc")
        );
        assert_eq!(
            pods.name_of("10.0.1.9".parse().unwrap()),
            Some("node/ip-10-0-1-9")
        );
        assert!(PodNames::parse(b"{}").is_err());
    }
}
