//! Longest-prefix match over one tier of prefixes: nested prefixes are flattened once into contiguous,
//! non-overlapping segments, so a lookup is one binary search whatever the number of prefixes.

/// One prefix of a tier, with the owner it names and its tie-break rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixEntry {
    pub first: u128,
    pub last: u128,
    /// Prefix length in the 128-bit key space (IPv4 lengths are offset by 96).
    pub len: u8,
    /// Among identical prefixes of one tier, the highest rank names the owner.
    pub rank: u8,
    pub owner: u32,
}

const NO_OWNER: u32 = u32::MAX;

/// Flattened segments: `starts[i]..starts[i+1]` belongs to `slots[i]`.
#[derive(Debug, Default)]
pub struct PrefixMap {
    starts: Vec<u128>,
    slots: Vec<(u32, u8)>,
}

impl PrefixMap {
    /// Builds the map; `entries` is left sorted with identical prefixes reduced to the best-ranked one.
    pub fn build(entries: &mut Vec<PrefixEntry>) -> Self {
        // Containing prefixes sort before the prefixes they contain; among identical prefixes the best rank
        // comes first (a stable sort keeps load order among equal ranks) and the rest are dropped.
        entries.sort_by(|a, b| {
            a.first
                .cmp(&b.first)
                .then(a.len.cmp(&b.len))
                .then(b.rank.cmp(&a.rank))
        });
        entries.dedup_by(|later, kept| later.first == kept.first && later.len == kept.len);

        let mut map = PrefixMap::default();
        let mut stack: Vec<PrefixEntry> = Vec::new();
        // Next key not yet covered by an emitted segment; `None` once the whole space is covered.
        let mut cursor: Option<u128> = Some(0);
        for entry in entries.iter() {
            while let Some(top) = stack.last().copied() {
                if top.last >= entry.first {
                    break;
                }
                map.fill_until(&mut cursor, top.last, (top.owner, top.len));
                stack.pop();
            }
            if entry.first > 0 {
                let outer = stack
                    .last()
                    .map_or((NO_OWNER, 0), |top| (top.owner, top.len));
                map.fill_until(&mut cursor, entry.first - 1, outer);
            }
            stack.push(*entry);
        }
        while let Some(top) = stack.pop() {
            map.fill_until(&mut cursor, top.last, (top.owner, top.len));
        }
        map.fill_until(&mut cursor, u128::MAX, (NO_OWNER, 0));
        map
    }

    /// Covers `cursor..=last` with `slot`, merging with the previous segment when it has the same slot.
    fn fill_until(&mut self, cursor: &mut Option<u128>, last: u128, slot: (u32, u8)) {
        let Some(start) = *cursor else { return };
        if start > last {
            return;
        }
        if self.slots.last() != Some(&slot) {
            self.starts.push(start);
            self.slots.push(slot);
        }
        *cursor = last.checked_add(1);
    }

    /// The owner and prefix length of the longest prefix containing `key`.
    pub fn lookup(&self, key: u128) -> Option<(u32, u8)> {
        let index = self
            .starts
            .partition_point(|start| *start <= key)
            .checked_sub(1)?;
        let (owner, len) = self.slots[index];
        (owner != NO_OWNER).then_some((owner, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{key_of, key_range};

    fn entry(net: &str, rank: u8, owner: u32) -> PrefixEntry {
        let (first, last, len) = key_range(&net.parse().unwrap());
        PrefixEntry {
            first,
            last,
            len,
            rank,
            owner,
        }
    }

    fn find(map: &PrefixMap, addr: &str) -> Option<(u32, u8)> {
        map.lookup(key_of(addr.parse().unwrap()))
    }

    #[test]
    fn nested_prefixes_resolve_to_the_longest() {
        let mut entries = vec![
            entry("10.0.0.0/8", 0, 1),
            entry("10.1.0.0/16", 0, 2),
            entry("10.1.2.0/24", 0, 3),
            entry("2001:db8::/32", 0, 4),
            entry("2001:db8:1::/48", 0, 5),
        ];
        let map = PrefixMap::build(&mut entries);
        assert_eq!(find(&map, "10.9.9.9"), Some((1, 104)));
        assert_eq!(find(&map, "10.1.9.9"), Some((2, 112)));
        assert_eq!(find(&map, "10.1.2.200"), Some((3, 120)));
        assert_eq!(find(&map, "10.1.3.0"), Some((2, 112)));
        assert_eq!(find(&map, "10.2.0.0"), Some((1, 104)));
        assert_eq!(find(&map, "11.0.0.0"), None);
        assert_eq!(find(&map, "9.255.255.255"), None);
        assert_eq!(find(&map, "2001:db8:1::9"), Some((5, 48)));
        assert_eq!(find(&map, "2001:db8:2::9"), Some((4, 32)));
        assert_eq!(find(&map, "2001:db9::"), None);
    }

    #[test]
    fn identical_prefixes_keep_the_best_rank() {
        let mut entries = vec![
            entry("52.0.0.0/16", 1, 7),
            entry("52.0.0.0/16", 5, 8),
            entry("52.0.0.0/16", 5, 9),
        ];
        let map = PrefixMap::build(&mut entries);
        assert_eq!(find(&map, "52.0.1.1"), Some((8, 112)));
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn whole_space_and_edges() {
        let mut entries = vec![
            entry("::/0", 0, 1),
            entry("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 0, 2),
        ];
        let map = PrefixMap::build(&mut entries);
        assert_eq!(find(&map, "::"), Some((1, 0)));
        assert_eq!(
            find(&map, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            Some((2, 128))
        );
        assert_eq!(
            find(&map, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
            Some((1, 0))
        );
        assert_eq!(PrefixMap::build(&mut Vec::new()).lookup(5), None);
    }
}
