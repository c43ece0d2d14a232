//! Longest-prefix match for IPv4 ([`Fib4`], DIR-24-8) and IPv6 ([`Fib6`], binary search on prefix
//! lengths).
//!
//! Both keep the exact prefix set as the source of truth (so deleting a prefix restores whatever
//! covers it) and derive a lookup structure from it. Lookups never allocate and never panic.

mod v4;
mod v6;

pub use v4::Fib4;
pub use v6::Fib6;

/// Index of a next-hop group.
pub type NextHopId = u32;

/// Largest [`NextHopId`] the encodings hold: the IPv4 FIB's 16-bit entries keep one bit for
/// "points to a group" and 0 for "no route", so ids run 0..=32,766.
pub const MAX_NEXT_HOP: NextHopId = (1 << 15) - 2;

/// Why a route was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FibError {
    /// The address has bits set beyond the prefix length.
    HostBitsSet,
    /// Longer than 32 (IPv4) / 128 (IPv6).
    BadLength,
    /// Next-hop id above [`MAX_NEXT_HOP`].
    NextHopOutOfRange,
    /// IPv4: no free second-level (tbl8) group left.
    TableFull,
}

impl std::fmt::Display for FibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FibError::HostBitsSet => "host bits set beyond the prefix length",
            FibError::BadLength => "prefix length too long for the family",
            FibError::NextHopOutOfRange => "next-hop id out of range",
            FibError::TableFull => {
                "FIB full: no second-level group left for prefixes longer than /24"
            }
        })
    }
}

impl std::error::Error for FibError {}

/// One run-time change of a FIB, replayable on its mirror copy ([`crate::mirror`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FibOp<A> {
    Insert(A, u8, NextHopId),
    Remove(A, u8),
}

/// What a [`FibOp`] did: the next hop the prefix had before (insert or remove), or why not.
pub type FibOutcome = Result<Option<NextHopId>, FibError>;

impl crate::mirror::Apply for Fib4 {
    type Op = FibOp<std::net::Ipv4Addr>;
    type Outcome = FibOutcome;
    fn apply(&mut self, op: &Self::Op) -> FibOutcome {
        match *op {
            FibOp::Insert(p, l, nh) => self.insert(p, l, nh),
            FibOp::Remove(p, l) => Ok(self.remove(p, l)),
        }
    }
}

impl crate::mirror::Apply for Fib6 {
    type Op = FibOp<std::net::Ipv6Addr>;
    type Outcome = FibOutcome;
    fn apply(&mut self, op: &Self::Op) -> FibOutcome {
        match *op {
            FibOp::Insert(p, l, nh) => self.insert_deferred(p, l, nh),
            FibOp::Remove(p, l) => Ok(self.remove_deferred(p, l)),
        }
    }
    fn finish(&mut self) {
        self.finish_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::{Ipv4Net, Ipv6Net};
    use prefix_trie::PrefixMap;
    use rand::{Rng, SeedableRng};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Random inserts, replaces and removes, every lookup checked against prefix-trie.
    #[test]
    fn v4_matches_prefix_trie_under_random_changes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut ours = Fib4::new();
        let mut reference: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
        let mut live: Vec<(u32, u8)> = Vec::new();
        // Few top bits so that prefixes nest and collide often.
        let rand_prefix = |rng: &mut rand_chacha::ChaCha8Rng| {
            // Mostly /12-/32 (a short prefix rewrites up to 2^24 entries: a few keep that path tested).
            let len = if rng.gen_ratio(1, 200) {
                rng.gen_range(0..12u8)
            } else {
                rng.gen_range(12..=32u8)
            };
            let a: u32 = (rng.gen::<u32>() & 0x0303_0f0f) | 0x0a00_0000;
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (a & m, len)
        };
        for step in 0..3000 {
            if step % 3 == 2 && !live.is_empty() {
                let (p, l) = live.swap_remove(rng.gen_range(0..live.len()));
                assert_eq!(
                    ours.remove(Ipv4Addr::from(p), l),
                    reference.remove(&Ipv4Net::new(p.into(), l).unwrap())
                );
            } else {
                let (p, l) = rand_prefix(&mut rng);
                let nh = rng.gen_range(0..1000);
                let old = ours.insert(Ipv4Addr::from(p), l, nh).unwrap();
                assert_eq!(old, reference.insert(Ipv4Net::new(p.into(), l).unwrap(), nh));
                if old.is_none() {
                    live.push((p, l));
                }
            }
            for _ in 0..20 {
                let a: u32 = (rng.gen::<u32>() & 0x0303_0f0f) | 0x0a00_0000;
                let want = reference.get_lpm(&Ipv4Net::new(a.into(), 32).unwrap()).map(|(_, &v)| v);
                assert_eq!(ours.lookup(a), want, "step {step} addr {}", Ipv4Addr::from(a));
            }
        }
        assert_eq!(ours.len(), live.len());
    }

    #[test]
    fn v6_matches_prefix_trie_under_random_changes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let mut ours = Fib6::new();
        let mut reference: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
        let mut live: Vec<(u128, u8)> = Vec::new();
        let lens = [0u8, 16, 29, 32, 36, 40, 44, 48, 56, 64, 127, 128];
        let bits = |rng: &mut rand_chacha::ChaCha8Rng| {
            (rng.gen::<u128>() & 0x0003_0003_0003_0003_0000_0000_0000_0003) | (0x2001u128 << 112)
        };
        for step in 0..1500 {
            if step % 3 == 2 && !live.is_empty() {
                let (p, l) = live.swap_remove(rng.gen_range(0..live.len()));
                assert_eq!(
                    ours.remove(Ipv6Addr::from(p), l),
                    reference.remove(&Ipv6Net::new(p.into(), l).unwrap())
                );
            } else {
                let l = lens[rng.gen_range(0..lens.len())];
                let m = if l == 0 { 0 } else { u128::MAX << (128 - l as u32) };
                let p = bits(&mut rng) & m;
                let nh = rng.gen_range(0..1000);
                let old = ours.insert(Ipv6Addr::from(p), l, nh).unwrap();
                assert_eq!(old, reference.insert(Ipv6Net::new(p.into(), l).unwrap(), nh));
                if old.is_none() {
                    live.push((p, l));
                }
            }
            let addrs: Vec<u128> = (0..70).map(|_| bits(&mut rng)).collect();
            let mut burst = vec![None; addrs.len()];
            ours.lookup_burst(&addrs, &mut burst);
            for (&a, &got) in addrs.iter().zip(&burst) {
                let want =
                    reference.get_lpm(&Ipv6Net::new(a.into(), 128).unwrap()).map(|(_, &v)| v);
                assert_eq!(ours.lookup(a), want, "step {step} addr {}", Ipv6Addr::from(a));
                assert_eq!(got, want, "burst, step {step} addr {}", Ipv6Addr::from(a));
            }
        }
    }

    #[test]
    fn clones_are_independent_snapshots() {
        let mut f = Fib4::new();
        f.insert("10.0.0.0".parse().unwrap(), 8, 1).unwrap();
        let snap = f.clone();
        f.insert("10.1.0.0".parse().unwrap(), 16, 2).unwrap();
        assert_eq!(snap.lookup(0x0a01_0001), Some(1));
        assert_eq!(f.lookup(0x0a01_0001), Some(2));
    }
}
