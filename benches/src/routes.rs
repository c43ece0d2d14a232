//! Seeded, BGP-like route tables and destinations drawn from them.
//!
//! The prefix-length mixes follow the public IPv4 and IPv6 Internet tables (as the CIDR report
//! and bgp.potaroo.net publish them): IPv4 is about 60% /24, most of the rest /16-/23, a handful
//! of /8-/15 and a few more-specifics beyond /24; IPv6 is about half /48, then /32, /44, /40,
//! /36, /29 and a few /56 and /64. Prefixes are unique and avoid special-purpose space
//! (RFC 6890), so a bench can add its own routes in 10/8 or the documentation ranges without
//! the table shadowing them. IPv6 routes sit in the regional registries' blocks, as
//! more-specifics of /29-/32 allocations (some allocations far busier than others), so they
//! nest and cluster the way real deaggregation does.
//!
//! The same `(n, seed)` always gives the same table, in the same (random) order.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use rand::distributions::{Distribution, WeightedIndex};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Prefix lengths of the IPv4 table and their weights (per million routes).
const V4_LENGTHS: &[(u8, u32)] = &[
    (8, 16),
    (9, 15),
    (10, 40),
    (11, 100),
    (12, 300),
    (13, 600),
    (14, 1_100),
    (15, 1_900),
    (16, 13_000),
    (17, 8_000),
    (18, 13_500),
    (19, 25_000),
    (20, 40_000),
    (21, 45_000),
    (22, 110_000),
    (23, 90_000),
    (24, 600_000),
    (25, 1_000),
    (26, 800),
    (27, 500),
    (28, 300),
    (29, 300),
    (30, 200),
    (31, 50),
    (32, 800),
];

/// Special-purpose IPv4 space (RFC 6890) and multicast/reserved: never in the table.
const V4_BOGONS: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0/8
    (0x0a00_0000, 8),  // 10/8
    (0x6440_0000, 10), // 100.64/10
    (0x7f00_0000, 8),  // 127/8
    (0xa9fe_0000, 16), // 169.254/16
    (0xac10_0000, 12), // 172.16/12
    (0xc000_0000, 24), // 192.0.0/24
    (0xc000_0200, 24), // 192.0.2/24
    (0xc0a8_0000, 16), // 192.168/16
    (0xc612_0000, 15), // 198.18/15
    (0xc633_6400, 24), // 198.51.100/24
    (0xcb00_7100, 24), // 203.0.113/24
    (0xe000_0000, 3),  // 224/3
];

fn mask4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

fn is_bogon4(prefix: u32, len: u8) -> bool {
    V4_BOGONS.iter().any(|&(b, bl)| (prefix ^ b) & mask4(len.min(bl)) == 0)
}

/// `n` unique IPv4 prefixes, about 60% /24 (see the module doc). Host bits are zero.
pub fn ipv4_table(n: usize, seed: u64) -> Vec<(Ipv4Addr, u8)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lengths = WeightedIndex::new(V4_LENGTHS.iter().map(|l| l.1)).expect("weights");
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = V4_LENGTHS[lengths.sample(&mut rng)].0;
        // Short lengths have few candidates: give up on one after a few tries.
        for _ in 0..64 {
            let prefix = rng.gen::<u32>() & mask4(len);
            if !is_bogon4(prefix, len) && seen.insert((prefix, len)) {
                out.push((Ipv4Addr::from(prefix), len));
                break;
            }
        }
    }
    out
}

/// `n` destinations (host order), each inside a prefix of `table` picked uniformly.
pub fn ipv4_destinations(table: &[(Ipv4Addr, u8)], n: usize, seed: u64) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (p, len) = table[rng.gen_range(0..table.len())];
            u32::from(p) | rng.gen::<u32>() & !mask4(len)
        })
        .collect()
}

/// Prefix lengths of the IPv6 table and their weights (per thousand routes).
const V6_LENGTHS: &[(u8, u32)] = &[
    (19, 1),
    (20, 1),
    (22, 1),
    (24, 1),
    (28, 1),
    (29, 30),
    (30, 5),
    (31, 5),
    (32, 130),
    (33, 15),
    (34, 15),
    (35, 8),
    (36, 30),
    (37, 5),
    (38, 10),
    (39, 7),
    (40, 60),
    (41, 6),
    (42, 12),
    (43, 6),
    (44, 75),
    (45, 10),
    (46, 15),
    (47, 15),
    (48, 520),
    (52, 3),
    (56, 6),
    (60, 2),
    (64, 5),
];

/// Regional registry blocks and how much of the table each holds.
const V6_BLOCKS: &[(u128, u8, u32)] = &[
    (0x2001 << 112, 16, 8),  // 2001::/16, early allocations of every registry
    (0x2400 << 112, 12, 20), // APNIC
    (0x2600 << 112, 12, 22), // ARIN
    (0x2800 << 112, 12, 12), // LACNIC
    (0x2a00 << 112, 12, 33), // RIPE NCC
    (0x2c00 << 112, 12, 5),  // AFRINIC
];

/// `n` unique IPv6 prefixes, mostly /48 and /29-/44 (see the module doc). Host bits are zero.
pub fn ipv6_table(n: usize, seed: u64) -> Vec<(Ipv6Addr, u8)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let blocks = WeightedIndex::new(V6_BLOCKS.iter().map(|b| b.2)).expect("weights");
    let lengths = WeightedIndex::new(V6_LENGTHS.iter().map(|l| l.1)).expect("weights");
    let random_under = |rng: &mut ChaCha8Rng, base: u128, from: u8, to: u8| {
        (base | rng.gen::<u128>() & !mask6(from)) & mask6(to)
    };
    // The registries' allocations to networks: /32 (a fifth of them /29, RIPE-style).
    let n_alloc = (n / 4).max(1);
    let mut allocs = Vec::with_capacity(n_alloc);
    let mut seen = HashSet::with_capacity(n_alloc);
    while allocs.len() < n_alloc {
        let (base, blen, _) = V6_BLOCKS[blocks.sample(&mut rng)];
        let len = if rng.gen_bool(0.2) { 29 } else { 32 };
        let a = random_under(&mut rng, base, blen, len);
        // No allocation inside another: a /32 under an existing /29 is skipped.
        if !seen.contains(&(a & mask6(29), 29)) && seen.insert((a, len)) {
            allocs.push((a, len));
        }
    }
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = V6_LENGTHS[lengths.sample(&mut rng)].0;
        for _ in 0..64 {
            let prefix = if len < 29 {
                let (base, blen, _) = V6_BLOCKS[blocks.sample(&mut rng)];
                random_under(&mut rng, base, blen.min(len), len)
            } else {
                // Skewed: the busiest allocations carry many more-specifics, most carry few.
                let u: f64 = rng.gen();
                let (a, alen) =
                    allocs[((u * u * allocs.len() as f64) as usize).min(allocs.len() - 1)];
                random_under(&mut rng, a, alen.min(len), len)
            };
            if seen.insert((prefix, len)) {
                out.push((Ipv6Addr::from(prefix), len));
                break;
            }
        }
    }
    out
}

/// `n` destinations (`u128::from_be_bytes` order), each inside a prefix of `table` picked
/// uniformly.
pub fn ipv6_destinations(table: &[(Ipv6Addr, u8)], n: usize, seed: u64) -> Vec<u128> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (p, len) = table[rng.gen_range(0..table.len())];
            u128::from(p) | rng.gen::<u128>() & !mask6(len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_table_is_unique_clean_and_bgp_shaped() {
        let t = ipv4_table(20_000, 1);
        assert_eq!(t, ipv4_table(20_000, 1));
        assert_eq!(t.len(), 20_000);
        let unique: HashSet<_> = t.iter().collect();
        assert_eq!(unique.len(), t.len());
        for &(p, len) in &t {
            assert_eq!(u32::from(p) & !mask4(len), 0);
            assert!(!is_bogon4(u32::from(p), len));
        }
        let share24 = t.iter().filter(|r| r.1 == 24).count() as f64 / t.len() as f64;
        assert!((0.55..0.65).contains(&share24), "{share24}");
        for d in ipv4_destinations(&t, 1000, 2) {
            assert!(t.iter().any(|&(p, l)| d & mask4(l) == u32::from(p)));
        }
    }

    #[test]
    fn ipv6_table_is_unique_and_mostly_48() {
        let t = ipv6_table(20_000, 1);
        assert_eq!(t.len(), 20_000);
        let unique: HashSet<_> = t.iter().collect();
        assert_eq!(unique.len(), t.len());
        for &(p, len) in &t {
            assert_eq!(u128::from(p) & !mask6(len), 0);
            assert_eq!(u128::from(p) >> 125, 1, "inside 2000::/3");
        }
        let share48 = t.iter().filter(|r| r.1 == 48).count() as f64 / t.len() as f64;
        assert!((0.45..0.6).contains(&share48), "{share48}");
        for d in ipv6_destinations(&t, 200, 2) {
            assert!(t.iter().any(|&(p, l)| d & mask6(l) == u128::from(p)));
        }
    }
}
