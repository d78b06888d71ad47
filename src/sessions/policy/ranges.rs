//! An IP allow-list as sorted, merged ranges: a lookup is a binary search over a slice,
//! logarithmic in the number of CIDRs and free of allocation.

use std::net::IpAddr;

use ipnet::IpNet;

/// The addresses a list of CIDRs admits, IPv4 and IPv6 apart, each as sorted
/// non-overlapping inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpRanges {
    v4: Box<[(u32, u32)]>,
    v6: Box<[(u128, u128)]>,
}

// === impl IpRanges ===

impl IpRanges {
    /// The ranges of `nets`, merged where they touch or overlap.
    pub fn new(nets: &[IpNet]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets.iter().map(unmapped) {
            match net {
                IpNet::V4(net) => v4.push((net.network().to_bits(), net.broadcast().to_bits())),
                IpNet::V6(net) => v6.push((net.network().to_bits(), net.broadcast().to_bits())),
            }
        }
        Self {
            v4: merged(v4),
            v6: merged(v6),
        }
    }

    /// Whether `ip` is inside a range. An IPv4-mapped IPv6 address is an IPv4 one.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => within(&self.v4, ip.to_bits()),
            IpAddr::V6(ip) => within(&self.v6, ip.to_bits()),
        }
    }
}

/// A range of IPv4-mapped IPv6 addresses (`::ffff:10.0.0.0/104`) as the IPv4 range it
/// maps: clients are compared as IPv4, so the entry must be too.
fn unmapped(net: &IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(*net, IpNet::V4),
            None => *net,
        },
        _ => *net,
    }
}

/// Sorted by start, then each range folded into the previous one when they overlap or
/// are adjacent.
fn merged<T: Copy + Ord + num_step::Successor>(mut ranges: Vec<(T, T)>) -> Box<[(T, T)]> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if last.1.successor().is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out.into_boxed_slice()
}

/// The first range ending at or after `x` is the only one that can hold it.
fn within<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let index = ranges.partition_point(|&(_, end)| end < x);
    ranges.get(index).is_some_and(|&(start, _)| start <= x)
}

/// The next address, for merging adjacent ranges; `None` past the last one.
mod num_step {
    pub trait Successor: Sized {
        fn successor(self) -> Option<Self>;
    }

    impl Successor for u32 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }

    impl Successor for u128 {
        fn successor(self) -> Option<Self> {
            self.checked_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(cidrs: &[&str]) -> IpRanges {
        let nets: Vec<IpNet> = cidrs.iter().map(|c| c.parse().unwrap()).collect();
        IpRanges::new(&nets)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn edges_of_a_v4_range_are_inside_and_their_neighbours_outside() {
        let list = ranges(&["203.0.113.0/24"]);
        assert!(list.contains(ip("203.0.113.0")));
        assert!(list.contains(ip("203.0.113.255")));
        assert!(!list.contains(ip("203.0.112.255")));
        assert!(!list.contains(ip("203.0.114.0")));
    }

    #[test]
    fn edges_of_a_v6_range_and_mapped_addresses() {
        let list = ranges(&["2001:db8::/32", "10.0.0.1/32"]);
        assert!(list.contains(ip("2001:db8::")));
        assert!(list.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!list.contains(ip("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!list.contains(ip("2001:db9::")));
        assert!(
            list.contains(ip("::ffff:10.0.0.1")),
            "mapped: compared as IPv4"
        );
        assert!(!list.contains(ip("::ffff:10.0.0.2")));
        assert!(!list.contains(ip("10.0.0.2")));
        let mapped_entry = ranges(&["::ffff:192.0.2.0/120"]);
        assert!(mapped_entry.contains(ip("192.0.2.200")));
        assert!(mapped_entry.contains(ip("::ffff:192.0.2.1")));
        assert!(!mapped_entry.contains(ip("192.0.3.0")));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        let list = ranges(&["10.0.0.0/25", "10.0.0.128/25", "10.0.0.7/32", "0.0.0.0/0"]);
        assert_eq!(list.v4.as_ref(), &[(0, u32::MAX)]);
        let list = ranges(&["10.0.0.0/25", "10.0.0.128/25", "10.0.2.0/24"]);
        assert_eq!(list.v4.len(), 2);
        assert!(list.contains(ip("10.0.0.200")));
        assert!(!list.contains(ip("10.0.1.0")));
        let all = ranges(&["::/0"]);
        assert!(all.contains(ip("ffff::1")));
        assert!(!all.contains(ip("1.2.3.4")), "::/0 is IPv6 only");
    }

    #[test]
    fn a_thousand_single_addresses_are_all_found() {
        let cidrs: Vec<String> = (0..1000u32)
            .map(|i| format!("10.{}.{}.1/32", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
        let list = ranges(&refs);
        for i in 0..1000u32 {
            assert!(list.contains(ip(&format!("10.{}.{}.1", i / 256, i % 256))));
            assert!(!list.contains(ip(&format!("10.{}.{}.2", i / 256, i % 256))));
        }
    }
}
