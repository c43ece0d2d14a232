//! IPv6: binary search on prefix lengths (Waldvogel, Varghese, Turner, Plattner, SIGCOMM 1997).
//!
//! One hash table per distinct prefix length holds the prefixes of that length plus *markers*:
//! a marker at length `m` says "a longer prefix starting with these bits exists, search longer",
//! and carries the best match among lengths <= m so that a failed longer search still answers
//! correctly. A lookup binary-searches the sorted list of lengths: with the ~15-25 distinct lengths
//! of a real table that is 4-5 hash probes, whatever the number of prefixes. Multibit tries need
//! 4-6 dependent node reads for a /48 and hundreds of MiB for 200k prefixes; this needs one table
//! entry per prefix and marker.
//!
//! The search structure is derived from the exact prefix set on every change (O(n) for `n`
//! prefixes): building is for configuration time and bulk loads; the control-socket issue replaces
//! this with incremental marker maintenance.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::{FibError, NextHopId, MAX_NEXT_HOP};

type Map = hashbrown::HashMap<u128, u32, foldhash::fast::FixedState>;

#[inline(always)]
fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len as u32)
    }
}

/// The IPv6 FIB.
#[derive(Clone, Default)]
pub struct Fib6 {
    /// Exact routes: the source of truth, (prefix, len) -> next hop.
    routes: BTreeMap<(u128, u8), NextHopId>,
    /// Distinct lengths, ascending; `tables[i]` serves `lengths[i]`.
    lengths: Vec<u8>,
    masks: Vec<u128>,
    /// Key: prefix bits; value: best next hop + 1 at or below this length (0: none, a pure marker).
    tables: Vec<Map>,
}

fn check(prefix: u128, len: u8, nh: Option<NextHopId>) -> Result<(), FibError> {
    if len > 128 {
        return Err(FibError::BadLength);
    }
    if prefix & !mask(len) != 0 {
        return Err(FibError::HostBitsSet);
    }
    if nh.is_some_and(|n| n > MAX_NEXT_HOP) {
        return Err(FibError::NextHopOutOfRange);
    }
    Ok(())
}

impl Fib6 {
    pub fn new() -> Fib6 {
        Fib6::default()
    }

    /// Longest-prefix match of `addr` (`u128::from_be_bytes` of the address).
    #[inline]
    pub fn lookup(&self, addr: u128) -> Option<NextHopId> {
        let (mut lo, mut hi) = (0usize, self.lengths.len());
        let mut best = 0u32;
        while lo < hi {
            let mid = (lo + hi) / 2;
            // `mid < lengths.len() == masks.len() == tables.len()`.
            match self.tables[mid].get(&(addr & self.masks[mid])) {
                Some(&v) => {
                    if v != 0 {
                        best = v;
                    }
                    lo = mid + 1;
                }
                None => hi = mid,
            }
        }
        best.checked_sub(1)
    }

    #[inline]
    pub fn lookup_burst(&self, addrs: &[u128], out: &mut [Option<NextHopId>]) {
        for (a, o) in addrs.iter().zip(out.iter_mut()) {
            *o = self.lookup(*a);
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn get(&self, prefix: Ipv6Addr, len: u8) -> Option<NextHopId> {
        self.routes.get(&(u128::from(prefix), len)).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Ipv6Addr, u8, NextHopId)> + '_ {
        self.routes.iter().map(|(&(p, l), &n)| (Ipv6Addr::from(p), l, n))
    }

    pub fn memory_bytes(&self) -> usize {
        self.tables.iter().map(|t| t.capacity() * 21).sum::<usize>() + self.routes.len() * 48
    }

    pub fn from_routes(
        routes: impl IntoIterator<Item = (Ipv6Addr, u8, NextHopId)>,
    ) -> Result<Fib6, FibError> {
        let mut f = Fib6::new();
        for (p, l, n) in routes {
            let p = u128::from(p);
            check(p, l, Some(n))?;
            f.routes.insert((p, l), n);
        }
        f.rebuild();
        Ok(f)
    }

    pub fn insert(
        &mut self,
        prefix: Ipv6Addr,
        len: u8,
        nh: NextHopId,
    ) -> Result<Option<NextHopId>, FibError> {
        let p = u128::from(prefix);
        check(p, len, Some(nh))?;
        let old = self.routes.insert((p, len), nh);
        self.rebuild();
        Ok(old)
    }

    pub fn remove(&mut self, prefix: Ipv6Addr, len: u8) -> Option<NextHopId> {
        let old = self.routes.remove(&(u128::from(prefix), len))?;
        self.rebuild();
        Some(old)
    }

    /// Best real route for `key` among lengths <= `len` (build time only).
    fn best_at_or_below(&self, key: u128, len: u8, by_len: &[Map]) -> u32 {
        for (i, &l) in self.lengths.iter().enumerate().rev() {
            if l > len {
                continue;
            }
            if let Some(&n) = by_len[i].get(&(key & mask(l))) {
                return n + 1;
            }
        }
        0
    }

    fn rebuild(&mut self) {
        let mut lengths: Vec<u8> = self.routes.keys().map(|&(_, l)| l).collect();
        lengths.sort_unstable();
        lengths.dedup();
        self.masks = lengths.iter().map(|&l| mask(l)).collect();
        let idx = |l: u8| lengths.binary_search(&l).unwrap_or(0);
        // Real routes by length first (markers need them to compute best matches).
        let mut real: Vec<Map> = lengths.iter().map(|_| Map::default()).collect();
        for (&(p, l), &n) in &self.routes {
            real[idx(l)].insert(p, n);
        }
        self.lengths = lengths.clone();
        let mut tables: Vec<Map> =
            real.iter().map(|m| m.iter().map(|(&k, &n)| (k, n + 1)).collect()).collect();
        // Markers: along the binary-search path to each route's length, every node with a
        // shorter length where the search must go right gets a marker.
        for &(p, l) in self.routes.keys() {
            let target = idx(l);
            let (mut lo, mut hi) = (0usize, lengths.len());
            while lo < hi {
                let mid = (lo + hi) / 2;
                if mid == target {
                    break;
                }
                if mid < target {
                    let ml = lengths[mid];
                    let key = p & mask(ml);
                    if !tables[mid].contains_key(&key) {
                        let best = self.best_at_or_below(key, ml, &real);
                        tables[mid].insert(key, best);
                    }
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
        }
        self.tables = tables;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> u128 {
        u128::from(s.parse::<Ipv6Addr>().unwrap())
    }

    #[test]
    fn markers_fall_back_to_the_best_shorter_match() {
        let mut f = Fib6::new();
        f.insert("2001:db8::".parse().unwrap(), 32, 1).unwrap();
        f.insert("2001:db8:1::".parse().unwrap(), 48, 2).unwrap();
        f.insert("2001:db8:1:2::".parse().unwrap(), 64, 3).unwrap();
        f.insert("::".parse().unwrap(), 0, 9).unwrap();
        assert_eq!(f.lookup(a("2001:db8:1:2::5")), Some(3));
        // Matches the /48's marker path but not the /64: must answer the /48.
        assert_eq!(f.lookup(a("2001:db8:1:3::5")), Some(2));
        assert_eq!(f.lookup(a("2001:db8:2::1")), Some(1));
        assert_eq!(f.lookup(a("2002::1")), Some(9));
        f.remove("2001:db8:1::".parse().unwrap(), 48);
        assert_eq!(f.lookup(a("2001:db8:1:3::5")), Some(1));
        assert_eq!(f.lookup(a("2001:db8:1:2::5")), Some(3));
        assert_eq!(f.insert("2001:db8::1".parse().unwrap(), 32, 1), Err(FibError::HostBitsSet));
    }
}
