//! Address arithmetic shared by the owner table, the flow classifier and the SQL export: every address is a
//! 128-bit key (IPv4 mapped into `::ffff:0:0/96`), so one sorted table serves both families.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Offset of the IPv4-mapped block in the 128-bit key space.
const V4_MAPPED_BASE: u128 = 0xffff_0000_0000;

/// The 128-bit key of an address: IPv6 as is, IPv4 mapped into `::ffff:0:0/96`.
pub fn key_of(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => V4_MAPPED_BASE | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address a key stands for, IPv4 when it lies in the mapped block.
pub fn addr_of(key: u128) -> IpAddr {
    if key >> 32 == V4_MAPPED_BASE >> 32 {
        IpAddr::V4(Ipv4Addr::from(key as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(key))
    }
}

/// First key, last key and prefix length (in the 128-bit space) of a network.
pub fn key_range(net: &IpNet) -> (u128, u128, u8) {
    let len = match net {
        IpNet::V4(n) => 96 + n.prefix_len(),
        IpNet::V6(n) => n.prefix_len(),
    };
    let first = key_of(net.network());
    (first, first | host_mask(len), len)
}

/// The network of the given 128-bit prefix length containing `key`, in its natural family.
pub fn net_of(key: u128, len: u8) -> IpNet {
    let first = key & !host_mask(len);
    match addr_of(first) {
        IpAddr::V4(v4) if len >= 96 => IpNet::V4(ipnet::Ipv4Net::new_assert(v4, len - 96)),
        addr => IpNet::new_assert(
            match addr {
                IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
                v6 => v6,
            },
            len,
        ),
    }
}

fn host_mask(len: u8) -> u128 {
    if len >= 128 {
        0
    } else {
        u128::MAX >> len
    }
}

/// The key as 32 lowercase hex digits: how the SQL export compares addresses as text.
pub fn key_hex(key: u128) -> String {
    format!("{key:032x}")
}

/// Address blocks that never leave a VPC through a NAT gateway's public side: private, shared (CGNAT),
/// loopback, link-local, unspecified, and their IPv6 counterparts.
pub const NON_PUBLIC_NETS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Key ranges of [`NON_PUBLIC_NETS`].
pub fn non_public_ranges() -> Vec<(u128, u128)> {
    NON_PUBLIC_NETS
        .iter()
        .filter_map(|text| text.parse::<IpNet>().ok())
        .map(|net| {
            let (first, last, _) = key_range(&net);
            (first, last)
        })
        .collect()
}

/// Whether an address is routable on the internet (outside [`NON_PUBLIC_NETS`]).
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(o[0] == 0
                || o[0] == 10
                || o[0] == 127
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 169 && o[1] == 254)
                || (o[0] == 172 && (16..32).contains(&o[1]))
                || (o[0] == 192 && o[1] == 168))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_both_families() {
        for text in ["192.0.2.7", "2001:db8::1", "::1", "255.255.255.255"] {
            let addr: IpAddr = text.parse().unwrap();
            assert_eq!(addr_of(key_of(addr)), addr);
        }
    }

    #[test]
    fn key_range_covers_the_network() {
        let (first, last, len) = key_range(&"10.1.0.0/16".parse().unwrap());
        assert_eq!(len, 112);
        assert_eq!(addr_of(first), "10.1.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(addr_of(last), "10.1.255.255".parse::<IpAddr>().unwrap());
        assert_eq!(
            net_of(key_of("10.1.2.3".parse().unwrap()), 112).to_string(),
            "10.1.0.0/16"
        );
        assert_eq!(
            net_of(key_of("2001:db8::5".parse().unwrap()), 32).to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn public_test_agrees_with_the_published_list() {
        let ranges = non_public_ranges();
        for text in [
            "10.2.3.4",
            "172.31.0.1",
            "100.100.1.1",
            "fd00::1",
            "fe80::1",
            "8.8.8.8",
            "2600:1f18::1",
            "172.32.0.1",
        ] {
            let addr: IpAddr = text.parse().unwrap();
            let key = key_of(addr);
            let in_list = ranges.iter().any(|(a, b)| (*a..=*b).contains(&key));
            assert_eq!(is_public(addr), !in_list, "{text}");
        }
    }
}
