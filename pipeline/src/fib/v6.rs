//! IPv6: binary search on prefix lengths (Waldvogel, Varghese, Turner, Plattner, SIGCOMM 1997),
//! with three refinements that took a 200k-prefix lookup from ~140 ns to under 50 ns here:
//!
//! - One hash table per distinct prefix length holds the prefixes of that length plus *markers*:
//!   a marker at length `m` says "a longer prefix starting with these bits exists, search longer",
//!   and carries the best match among lengths <= m so that a failed longer search still answers.
//! - Real routes that no longer route extends carry [`STOP`]: the search ends on them. Most routes
//!   of a real table are such leaves.
//! - The search tree over lengths is not the plain middle split but the one that minimises the
//!   expected number of probes given how many routes each length holds ([`search_tree`]): /48 and
//!   /32 are probed first, so most lookups take one or two probes.
//! - The burst lookup runs its 64 lanes in lockstep, prefetching every lane's bucket before
//!   probing any, so their cache misses overlap ([`Fib6::lookup_burst`]).
//! - Beside the root level, the burst lookup probes a per-/32 *region* table that lists which
//!   lengths between /32 and the root the /32 holds, so a lookup that misses the root probes
//!   just those, all at once, instead of walking the tree one dependent round at a time. This
//!   took the burst from 402 to 252 instructions a lookup and 0.79-0.84x the time (README).
//!
//! Multibit tries need 4-6 dependent node reads for a /48 and hundreds of MiB for 200k prefixes;
//! this needs one table entry per prefix and marker (~20 MiB for 200k prefixes).
//!
//! The search structure is built from the exact prefix set (O(n) for `n` prefixes, ~80 ms for
//! 200k). Run-time changes ([`Fib6::insert_deferred`]) update only the entries around the
//! changed prefix (those of the prefixes covering it and of the routes under it); only a
//! prefix length the table did not have changes the search tree and needs the full rebuild.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ferroplane_hugepages::Table;

use super::{FibError, NextHopId, MAX_NEXT_HOP};

type Map = hashbrown::HashMap<u128, u32, foldhash::fast::FixedState>;

/// A read-only hash table of `prefix bits -> value` in cache-line buckets of four slots, probed
/// linearly bucket by bucket, at most two keys per bucket on average.
///
/// Hand-written rather than a `HashMap` because the burst lookup computes every lane's bucket and
/// prefetches it before probing any, and no map crate exposes its buckets for that; and because
/// the table must stay small to stay in cache. Levels up to /64 (nearly every route of a real
/// table) store only the high 64 bits of a key, so a bucket of four fits one cache line; longer
/// levels keep the low halves beside it in `lo`.
#[derive(Clone, Default)]
struct Slots {
    /// In 2 MiB-aligned memory, so that tables of a MiB or more get whole huge pages (see
    /// [`Table`]; from a `Vec`, 2 of this 11 MiB of buckets for 200k prefixes did).
    buckets: Table<Bucket>,
    /// Low 64 bits of the keys, per bucket, for levels longer than /64; empty otherwise.
    lo: Vec<[u64; 4]>,
    shift: u32,
    /// Keys held.
    len: usize,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    hi: [u64; 4],
    /// `EMPTY` marks a free slot; slots fill in order.
    vals: [u32; 4],
}

const EMPTY: u32 = u32::MAX;
/// On a real route's entry: no longer route extends it, so the search ends here. Most routes of
/// a real table are such leaves, so most lookups end at the first or second probe.
const STOP: u32 = 1 << 31;
/// The next-hop part of an entry.
const NH: u32 = STOP - 1;

/// The length of a region (see [`Fib6::lookup_burst`]): registries allocate /29-/32 blocks, and
/// nearly every longer route of a real table sits under one.
const REGION: u8 = 32;
/// Routes from this length up to [`REGION`] are expanded into an entry for every region they
/// cover (a /29 into eight); shorter ones would need thousands and take the search tree instead.
const EXPAND_FROM: u8 = 29;
/// Most candidate levels a region may list: a busier region takes the search tree instead, since
/// every candidate costs a probe in the second round.
const MAX_CANDIDATES: usize = 4;
/// A region entry: the best route at or below [`REGION`] (next hop + 1, 0: none) in these bits...
const R_BEST: u32 = (1 << 15) - 1;
/// ...or this flag, for a region with more than [`MAX_CANDIDATES`] levels to search...
const R_TREE: u32 = 1 << 15;
/// ...and from this bit up, one bit per level from `cand_first` (the first level longer than the
/// region) up to the root level, set when the region holds routes of that length. Bit 15 is clear
/// or the mask is empty, so no entry is `EMPTY`.
const R_CANDS: u32 = 16;

impl Slots {
    fn from_map(m: &Map, long: bool) -> Slots {
        Slots::with_capacity(m, long, 1)
    }

    /// At least `min_buckets` buckets (a power of two), and two keys per bucket at most.
    fn with_capacity(m: &Map, long: bool, min_buckets: usize) -> Slots {
        let cap = m.len().div_ceil(2).next_power_of_two().max(min_buckets).max(1);
        let buckets = Table::filled(cap, Bucket { hi: [0; 4], vals: [EMPTY; 4] });
        let lo = if long { vec![[0u64; 4]; cap] } else { Vec::new() };
        let mut t = Slots { buckets, lo, shift: (64 - cap.trailing_zeros()).min(63), len: 0 };
        for (&k, &v) in m {
            t.place(k, v);
        }
        t
    }

    /// Puts a key that is not in the table into the first free slot of its probe chain.
    fn place(&mut self, k: u128, v: u32) {
        let m = self.buckets.len() - 1;
        let mut i = self.bucket(k);
        loop {
            if let Some(s) = self.buckets[i].vals.iter().position(|&x| x == EMPTY) {
                self.buckets[i].hi[s] = (k >> 64) as u64;
                self.buckets[i].vals[s] = v;
                if let Some(lo) = self.lo.get_mut(i) {
                    lo[s] = k as u64;
                }
                self.len += 1;
                return;
            }
            i = (i + 1) & m;
        }
    }

    /// Where `k` sits: (bucket, slot).
    fn find(&self, k: u128) -> Option<(usize, usize)> {
        let m = self.buckets.len() - 1;
        let (hi, lo) = ((k >> 64) as u64, k as u64);
        let mut i = self.bucket(k);
        loop {
            let b = &self.buckets[i];
            for s in 0..4 {
                if b.vals[s] != EMPTY && b.hi[s] == hi && self.lo.get(i).is_none_or(|l| l[s] == lo)
                {
                    return Some((i, s));
                }
            }
            if b.vals[3] == EMPTY {
                return None;
            }
            i = (i + 1) & m;
        }
    }

    fn key_at(&self, i: usize, s: usize) -> u128 {
        ((self.buckets[i].hi[s] as u128) << 64) | self.lo.get(i).map_or(0, |l| l[s] as u128)
    }

    /// Sets `k` to `v`, or removes it when `v` is `EMPTY` (run-time changes; the table grows
    /// by rebuilding at twice the size when it passes two keys per bucket on average).
    fn set(&mut self, k: u128, v: u32) {
        match (self.find(k), v) {
            (Some((i, s)), EMPTY) => self.remove_at(i, s),
            (Some((i, s)), v) => self.buckets[i].vals[s] = v,
            (None, EMPTY) => {}
            (None, v) => {
                if (self.len + 1) > self.buckets.len() * 2 {
                    let mut all = self.entries();
                    all.insert(k, v);
                    let grown = self.buckets.len() * 2;
                    *self = Slots::with_capacity(&all, !self.lo.is_empty(), grown);
                } else {
                    self.place(k, v);
                }
            }
        }
    }

    /// Removes slot (i, s). Lookups stop at the first bucket with a free slot, so the slots
    /// after it in the bucket and the buckets after it in the chain are placed again (linear
    /// probing's deletion by re-insertion; chains are short at two keys per bucket).
    fn remove_at(&mut self, i: usize, s: usize) {
        let m = self.buckets.len() - 1;
        let mut moved = Vec::new();
        let mut j = i;
        loop {
            let full = self.buckets[j].vals[3] != EMPTY;
            for t in 0..4 {
                if self.buckets[j].vals[t] != EMPTY && !(j == i && t == s) {
                    moved.push((self.key_at(j, t), self.buckets[j].vals[t]));
                }
                self.buckets[j].vals[t] = EMPTY;
            }
            if !full {
                break;
            }
            j = (j + 1) & m;
            if j == i {
                break;
            }
        }
        self.len -= moved.len() + 1;
        for (k, v) in moved {
            self.place(k, v);
        }
    }

    /// Every key with its value.
    fn entries(&self) -> Map {
        let mut m = Map::default();
        for (i, b) in self.buckets.iter().enumerate() {
            for s in 0..4 {
                if b.vals[s] != EMPTY {
                    m.insert(self.key_at(i, s), b.vals[s]);
                }
            }
        }
        m
    }

    /// Home bucket of `k`: multiply-shift over both halves (prefix bits sit in the high half).
    #[inline(always)]
    fn bucket(&self, k: u128) -> usize {
        let h = ((k >> 64) as u64 ^ (k as u64).rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> self.shift) as usize & (self.buckets.len() - 1)
    }

    #[inline(always)]
    fn prefetch_bucket(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let i = i & (self.buckets.len() - 1);
            // SAFETY: prefetch is a hint; the pointer is in bounds (`i < len`).
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(self.buckets.as_ptr().add(i) as *const i8);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    /// The value of `k`, or `EMPTY`.
    #[inline(always)]
    fn get(&self, k: u128) -> u32 {
        self.get_from(self.bucket(k), k)
    }

    /// The value of `k` searching from bucket `i` (its home bucket). The four slots are compared
    /// all at once and the answer selected, so a probe has no branch on which slot matched.
    #[inline(always)]
    fn get_from(&self, mut i: usize, k: u128) -> u32 {
        let m = self.buckets.len() - 1;
        let (hi, lo) = ((k >> 64) as u64, k as u64);
        let long = !self.lo.is_empty();
        // Fewer keys than slots guarantees a bucket with a free slot, so the probe ends.
        loop {
            let b = &self.buckets[i];
            let mut hit = 0u32;
            for s in 0..4 {
                let eq = b.hi[s] == hi && (!long || self.lo[i][s] == lo) && b.vals[s] != EMPTY;
                hit |= (eq as u32) << s;
            }
            let v = b.vals[(hit.trailing_zeros() & 3) as usize];
            if hit != 0 || b.vals[3] == EMPTY {
                return if hit != 0 { v } else { EMPTY };
            }
            i = (i + 1) & m;
        }
    }

    fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>() + self.lo.len() * 32
    }
}

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
    /// Key: prefix bits; value: best next hop + 1 at or below this length (0: none, a pure
    /// marker), with [`STOP`] set on real routes that no longer route extends.
    tables: Vec<Slots>,
    /// The search tree: `mids[lo * (levels + 1) + hi]` is the level probed for the range
    /// `lo..hi`, chosen by route counts rather than the middle, so the search starts at the
    /// lengths that hold most routes (/48, /32 in the Internet table); see [`search_tree`].
    mids: Vec<u8>,
    /// `path_right[t]`: the levels where a search for a route at level `t` goes right (longer),
    /// i.e. where such a route needs a marker.
    path_right: Vec<[u64; 3]>,
    /// A change added a prefix length: the next [`Fib6::rebuild`] must rebuild everything.
    stale: bool,
    /// The search tree's root level (`mids[levels]`), which every lookup probes first.
    root: usize,
    /// The first level longer than [`REGION`].
    cand_first: usize,
    /// Per-/32 summaries for the lookups that miss at the root: key the /32's bits, value an
    /// `R_*` entry. Empty (and not probed) when the root is not longer than [`REGION`]. See
    /// [`Fib6::lookup_burst`].
    regions: Slots,
    regions_on: bool,
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
        let w = self.lengths.len() + 1;
        let (mut lo, mut hi) = (0usize, self.lengths.len());
        let mut best = 0u32;
        while lo < hi {
            // `mids` holds a level in lo..hi for every lo < hi <= levels.
            let mid = self.mids[lo * w + hi] as usize;
            match self.tables[mid].get(addr & self.masks[mid]) {
                EMPTY => hi = mid,
                v => {
                    if v & NH != 0 {
                        best = v & NH;
                    }
                    if v & STOP != 0 {
                        break;
                    }
                    lo = mid + 1;
                }
            }
        }
        best.checked_sub(1)
    }

    /// Looks up a burst in lockstep, 64 lanes at a time: each round prefetches the bucket every
    /// unfinished lane probes next, then probes them all, so the lanes' cache misses overlap
    /// instead of queueing one after another.
    ///
    /// The first round probes the root level (/48 in an Internet table: half the routes, which
    /// end there) and, beside it, the lane's /32 region. A lane that misses the root needs a
    /// route shorter than it, and the region says which lengths between /32 and the root its
    /// /32 holds (usually none to two) and the best route at or below /32. Those candidate
    /// levels are all probed in the second round, longest first, and the first hit answers:
    /// every longer level was probed and missed, so even a marker's best-shorter-match is the
    /// answer (that is what markers carry). So most lookups end within two rounds, where the
    /// search tree alone took up to six for the routes between /32 and /48, each round a cache
    /// miss that the last few lanes wait out with little to overlap. Lanes the regions do not
    /// cover (a hit at the root that is not a leaf, no region, or a busy one) go on down the
    /// search tree, as [`Fib6::lookup`] does for every address.
    #[inline]
    pub fn lookup_burst(&self, addrs: &[u128], out: &mut [Option<NextHopId>]) {
        const LANES: usize = 64;
        let levels = self.lengths.len();
        if levels == 0 {
            let n = addrs.len().min(out.len());
            out[..n].fill(None);
            return;
        }
        let w = levels + 1;
        let (root, rt, rmask) = (self.root, &self.tables[self.root], self.masks[self.root]);
        let regions = self.regions_on;
        let region_mask = mask(REGION);
        for (addrs, out) in addrs.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let n = addrs.len().min(out.len());
            let mut lo = [0usize; LANES];
            let mut hi = [levels; LANES];
            let mut best = [0u32; LANES];
            let mut mid = [0usize; LANES];
            let mut home = [0usize; LANES];
            let mut region = [0usize; LANES];
            // Round 1: the root and the region of every lane.
            for i in 0..n {
                home[i] = rt.bucket(addrs[i] & rmask);
                rt.prefetch_bucket(home[i]);
                if regions {
                    region[i] = self.regions.bucket(addrs[i] & region_mask);
                    self.regions.prefetch_bucket(region[i]);
                }
            }
            // Lanes left for the search tree, compacted after every round.
            let mut live = [0u8; LANES];
            let mut nlive = 0;
            // Lanes with candidate levels, and each one's (level, home bucket), longest first.
            let mut cand_lanes = [0u8; LANES];
            let mut ncand_lanes = 0;
            let mut cands = [[(0u8, 0u32); MAX_CANDIDATES]; LANES];
            let mut ncands = [0u8; LANES];
            for i in 0..n {
                let v = rt.get_from(home[i], addrs[i] & rmask);
                if v != EMPTY {
                    if v & NH != 0 {
                        best[i] = v & NH;
                    }
                    lo[i] = root + 1;
                    if v & STOP == 0 && lo[i] < levels {
                        live[nlive] = i as u8;
                        nlive += 1;
                    }
                    continue;
                }
                hi[i] = root;
                let r = if regions {
                    self.regions.get_from(region[i], addrs[i] & region_mask)
                } else {
                    EMPTY
                };
                if r == EMPTY || r & R_TREE != 0 {
                    if root > 0 {
                        live[nlive] = i as u8;
                        nlive += 1;
                    }
                    continue;
                }
                best[i] = r & R_BEST;
                let mut bits = r >> R_CANDS;
                if bits == 0 {
                    continue;
                }
                let mut k = 0;
                // The build lists at most MAX_CANDIDATES levels; `k` keeps `cands` in bounds
                // whatever an entry says.
                while bits != 0 && k < MAX_CANDIDATES {
                    let b = 31 - bits.leading_zeros();
                    bits &= !(1 << b);
                    let m = self.cand_first + b as usize;
                    let t = &self.tables[m];
                    let h = t.bucket(addrs[i] & self.masks[m]);
                    t.prefetch_bucket(h);
                    cands[i][k] = (m as u8, h as u32);
                    k += 1;
                }
                ncands[i] = k as u8;
                cand_lanes[ncand_lanes] = i as u8;
                ncand_lanes += 1;
            }
            let mut first = true;
            loop {
                for &l in &live[..nlive] {
                    let i = l as usize;
                    let m = self.mids[lo[i] * w + hi[i]] as usize;
                    mid[i] = m;
                    let t = &self.tables[m];
                    home[i] = t.bucket(addrs[i] & self.masks[m]);
                    t.prefetch_bucket(home[i]);
                }
                if first {
                    // Round 2 for the region lanes, whose buckets were prefetched as round 1
                    // resolved. Longest first: the first hit answers.
                    first = false;
                    for &l in &cand_lanes[..ncand_lanes] {
                        let i = l as usize;
                        for &(m, h) in &cands[i][..ncands[i] as usize] {
                            let m = m as usize;
                            let v = self.tables[m].get_from(h as usize, addrs[i] & self.masks[m]);
                            if v != EMPTY {
                                best[i] = v & NH;
                                break;
                            }
                        }
                    }
                }
                if nlive == 0 {
                    break;
                }
                let mut k = 0;
                for j in 0..nlive {
                    let i = live[j] as usize;
                    let m = mid[i];
                    let v = self.tables[m].get_from(home[i], addrs[i] & self.masks[m]);
                    let mut done = false;
                    if v == EMPTY {
                        hi[i] = m;
                    } else {
                        if v & NH != 0 {
                            best[i] = v & NH;
                        }
                        done = v & STOP != 0;
                        lo[i] = m + 1;
                    }
                    if !done && lo[i] < hi[i] {
                        live[k] = i as u8;
                        k += 1;
                    }
                }
                nlive = k;
            }
            for i in 0..n {
                out[i] = best[i].checked_sub(1);
            }
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
        self.tables.iter().map(Slots::bytes).sum::<usize>()
            + self.regions.bytes()
            + self.routes.len() * 48
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
        let old = self.insert_deferred(prefix, len, nh)?;
        self.finish_batch();
        Ok(old)
    }

    pub fn remove(&mut self, prefix: Ipv6Addr, len: u8) -> Option<NextHopId> {
        let old = self.remove_deferred(prefix, len)?;
        self.finish_batch();
        Some(old)
    }

    /// Adds or replaces a route and updates the lookup structure around it: the entries of
    /// the prefixes that cover it and of the routes under it, O(levels x routes under it). A
    /// route of a length the table did not have yet changes the search tree: that is left for
    /// [`Fib6::rebuild`] (once per batch), and lookups miss the new route until then.
    pub fn insert_deferred(
        &mut self,
        prefix: Ipv6Addr,
        len: u8,
        nh: NextHopId,
    ) -> Result<Option<NextHopId>, FibError> {
        let p = u128::from(prefix);
        check(p, len, Some(nh))?;
        let old = self.routes.insert((p, len), nh);
        self.changed(p, len);
        Ok(old)
    }

    /// Removes a route, updating the structure around it (see [`Fib6::insert_deferred`]).
    /// A length left without routes stays as an empty level until the next full rebuild.
    pub fn remove_deferred(&mut self, prefix: Ipv6Addr, len: u8) -> Option<NextHopId> {
        let p = u128::from(prefix);
        let old = self.routes.remove(&(p, len))?;
        self.changed(p, len);
        Some(old)
    }

    fn changed(&mut self, p: u128, len: u8) {
        if self.stale {
            return;
        }
        let Ok(at) = self.lengths.binary_search(&len) else {
            self.stale = true;
            return;
        };
        let mut keys: Vec<(usize, u128)> =
            (0..self.lengths.len()).map(|m| (m, p & self.masks[m])).collect();
        let end = p | !mask(len);
        for (&(q, _), _) in self.routes.range((p, len)..=(end, 128)) {
            for m in at..self.lengths.len() {
                keys.push((m, q & self.masks[m]));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        for (m, k) in keys {
            let v = self.entry(m, k);
            self.tables[m].set(k, v);
        }
        if self.regions_on {
            // The regions the route is part of, and those it is the best cover of: every
            // region under it.
            let mut regions = Vec::new();
            region_keys(p, len, &mut regions);
            if len < EXPAND_FROM {
                for &(q, l) in self.routes.range((p, len)..=(end, 128)).map(|r| r.0) {
                    region_keys(q, l, &mut regions);
                }
            }
            regions.sort_unstable();
            regions.dedup();
            for k in regions {
                let v = self.region_entry(k);
                self.regions.set(k, v);
            }
        }
    }

    /// What level `m` must hold for key `k`, from the route set: a real route (with [`STOP`]
    /// when nothing extends it), a marker carrying the best shorter match when a route under
    /// `k` is searched for through `m`, or nothing.
    fn entry(&self, m: usize, k: u128) -> u32 {
        let len = self.lengths[m];
        let end = k | !mask(len);
        let mut longer = self
            .routes
            .range((k, len + 1)..(end, 129))
            .map(|(&(q, l), _)| (q, l))
            .filter(|&(q, l)| l > len && q & mask(len) == k);
        if let Some(&nh) = self.routes.get(&(k, len)) {
            let extended = longer.next().is_some();
            return (nh + 1) | if extended { 0 } else { STOP };
        }
        let needs_marker = longer.any(|(_, l)| {
            self.lengths.binary_search(&l).is_ok_and(|t| {
                self.path_right.get(t).is_some_and(|r| r[m / 64] >> (m % 64) & 1 == 1)
            })
        });
        if !needs_marker {
            return EMPTY;
        }
        for &l in self.lengths[..m].iter().rev() {
            if let Some(&nh) = self.routes.get(&(k & mask(l), l)) {
                return nh + 1;
            }
        }
        0
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

    /// Derives the lookup structure from the exact route set.
    pub fn rebuild(&mut self) {
        let mut lengths: Vec<u8> = self.routes.keys().map(|&(_, l)| l).collect();
        lengths.sort_unstable();
        lengths.dedup();
        self.masks = lengths.iter().map(|&l| mask(l)).collect();
        let idx = |l: u8| lengths.binary_search(&l).unwrap_or(0);
        let mut weight = vec![0usize; lengths.len()];
        for &(_, l) in self.routes.keys() {
            weight[idx(l)] += 1;
        }
        let mids = search_tree(&weight);
        let w = lengths.len() + 1;
        // Real routes by length first (markers need them to compute best matches).
        let mut real: Vec<Map> = lengths.iter().map(|_| Map::default()).collect();
        for (&(p, l), &n) in &self.routes {
            real[idx(l)].insert(p, n);
        }
        self.lengths = lengths.clone();
        let mut tables: Vec<Map> =
            real.iter().map(|m| m.iter().map(|(&k, &n)| (k, n + 1)).collect()).collect();
        // A route is a leaf when the next route in (prefix, length) order lies outside it: every
        // route that extends (p, l) sorts right after it.
        let mut it = self.routes.keys().peekable();
        while let Some(&(p, l)) = it.next() {
            let extended = it.peek().is_some_and(|&&(q, _)| q & mask(l) == p);
            if !extended {
                if let Some(v) = tables[idx(l)].get_mut(&p) {
                    *v |= STOP;
                }
            }
        }
        // Markers: along the search path to each route's length, every level shorter than the
        // route's where the search must go right gets a marker.
        for &(p, l) in self.routes.keys() {
            let target = idx(l);
            let (mut lo, mut hi) = (0usize, lengths.len());
            while lo < hi {
                let mid = mids[lo * w + hi] as usize;
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
        self.tables =
            tables.iter().zip(&lengths).map(|(t, &l)| Slots::from_map(t, l > 64)).collect();
        self.path_right = (0..lengths.len())
            .map(|t| {
                let (mut lo, mut hi, mut right) = (0usize, lengths.len(), [0u64; 3]);
                while lo < hi {
                    let mid = mids[lo * w + hi] as usize;
                    if mid == t {
                        break;
                    }
                    if mid < t {
                        right[mid / 64] |= 1 << (mid % 64);
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                right
            })
            .collect();
        self.mids = mids;
        self.stale = false;
        self.build_regions(&real);
    }

    /// Sets the root and the regions from the levels and the route set (part of a rebuild;
    /// `real`: the routes by level). In one pass over the routes rather than a
    /// [`Fib6::region_entry`] per region, whose ordered-map scans doubled the build time.
    fn build_regions(&mut self, real: &[Map]) {
        let levels = self.lengths.len();
        self.root = if levels == 0 { 0 } else { self.mids[levels] as usize };
        self.cand_first = self.lengths.partition_point(|&l| l <= REGION);
        self.regions_on = levels > 0 && self.lengths[self.root] > REGION;
        let mut regions = Map::default();
        if self.regions_on {
            let root_len = self.lengths[self.root];
            // Every region with the levels its routes sit at; the value is finished below.
            let mut keys = Vec::new();
            for &(p, l) in self.routes.keys() {
                keys.clear();
                region_keys(p, l, &mut keys);
                for &k in &keys {
                    let bits = regions.entry(k).or_insert(0);
                    if l > REGION && l < root_len {
                        // Every route length is a level at or past `cand_first` here; anything
                        // else (or a bit past the 16 an entry lists) marks the region busy.
                        let bit = match self.lengths.binary_search(&l) {
                            Ok(t) => t
                                .checked_sub(self.cand_first)
                                .and_then(|b| 1u32.checked_shl(b as u32)),
                            Err(_) => None,
                        };
                        *bits |= bit.unwrap_or(1 << 31);
                    }
                }
            }
            for (&k, v) in regions.iter_mut() {
                let busy = *v >= 1 << (32 - R_CANDS) || v.count_ones() as usize > MAX_CANDIDATES;
                *v = if busy {
                    R_TREE
                } else {
                    self.best_at_or_below(k, REGION, real) | *v << R_CANDS
                };
            }
        }
        self.regions = Slots::from_map(&regions, false);
    }

    /// What the region of /32 `k` must hold (see the `R_*` constants), or `EMPTY` when no
    /// route of /32 or longer lies under it and no route of [`EXPAND_FROM`]-/31 covers it.
    fn region_entry(&self, k: u128) -> u32 {
        let mut exists = false;
        let mut cands = 0u32;
        let mut busy = false;
        let root_len = self.lengths[self.root];
        // Every route under the /32 (a prefix past `k` within the /32 is longer than /32).
        for &(_, l) in self.routes.range((k, REGION)..=(k | !mask(REGION), 128)).map(|r| r.0) {
            exists = true;
            if l > REGION && l < root_len {
                match self.lengths.binary_search(&l).map(|t| t.checked_sub(self.cand_first)) {
                    Ok(Some(b)) if b < 32 - R_CANDS as usize => cands |= 1 << b,
                    _ => busy = true,
                }
            }
        }
        let mut best = 0;
        for &l in self.lengths[..self.cand_first].iter().rev() {
            if let Some(&nh) = self.routes.get(&(k & mask(l), l)) {
                best = nh + 1;
                exists |= l >= EXPAND_FROM;
                break;
            }
        }
        if !exists {
            EMPTY
        } else if busy || cands.count_ones() as usize > MAX_CANDIDATES {
            R_TREE
        } else {
            best | cands << R_CANDS
        }
    }

    /// Brings the lookup structure up to date after a batch: a full rebuild only when the
    /// batch added a prefix length (see [`Fib6::insert_deferred`]).
    pub fn finish_batch(&mut self) {
        if self.stale {
            self.rebuild();
        }
    }
}

/// The regions whose entries route `p/len` is part of, appended to `keys`:
/// its own /32 when it is that long or longer, every /32 it covers from [`EXPAND_FROM`] up.
fn region_keys(p: u128, len: u8, keys: &mut Vec<u128>) {
    if len >= REGION {
        keys.push(p & mask(REGION));
    } else if len >= EXPAND_FROM {
        let step = 1u128 << (128 - REGION as u32);
        keys.extend((0..1u128 << (REGION - len)).map(|i| p + i * step));
    }
}

/// The search tree over levels with these route counts: the binary search tree that minimises
/// the expected number of probes when destinations are spread over the routes (Knuth's optimal
/// BST, O(n^3) over at most 129 levels, ~30 in practice). A lookup for an address under a leaf
/// route at level `t` stops on probing `t`, so its cost is `t`'s depth in the tree.
/// `mids[lo * (n + 1) + hi]` is the root for the range `lo..hi`.
fn search_tree(weight: &[usize]) -> Vec<u8> {
    let n = weight.len();
    let w = n + 1;
    let mut prefix = vec![0u64; w];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + weight[i] as u64;
    }
    let mut cost = vec![0u64; w * w];
    let mut mids = vec![0u8; w * w];
    for len in 1..=n {
        for lo in 0..=n - len {
            let hi = lo + len;
            let mut best = (u64::MAX, lo);
            for m in lo..hi {
                let c = cost[lo * w + m] + cost[(m + 1) * w + hi];
                if c < best.0 {
                    best = (c, m);
                }
            }
            cost[lo * w + hi] = best.0 + prefix[hi] - prefix[lo];
            mids[lo * w + hi] = best.1 as u8;
        }
    }
    mids
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

    /// Run-time sets and removes (with growth and chain repair) against a HashMap, for both
    /// key layouts (high half only, and with low halves).
    #[test]
    fn slots_set_and_remove_match_a_map() {
        use rand::{Rng, SeedableRng};
        for long in [false, true] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(long as u64);
            let mut t = Slots::from_map(&Map::default(), long);
            let mut want = std::collections::HashMap::new();
            for step in 0..20_000 {
                // Few distinct keys with colliding high halves, so chains form and break.
                let k: u128 = ((rng.gen_range(0..64u128)) << 64)
                    | if long { rng.gen_range(0..8u128) } else { 0 };
                if rng.gen_ratio(2, 5) {
                    t.set(k, EMPTY);
                    want.remove(&k);
                } else {
                    let v = rng.gen_range(0..1000u32);
                    t.set(k, v);
                    want.insert(k, v);
                }
                if step % 97 == 0 {
                    for probe in 0..64u128 {
                        for low in 0..if long { 8 } else { 1 } {
                            let k = (probe << 64) | low;
                            assert_eq!(
                                t.get(k),
                                want.get(&k).copied().unwrap_or(EMPTY),
                                "step {step}"
                            );
                        }
                    }
                }
                assert_eq!(t.len, want.len());
            }
        }
    }

    /// A big table changed route by route stays equal to one built from scratch.
    #[test]
    fn incremental_changes_equal_a_fresh_build() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let lens = [32u8, 40, 44, 48, 56, 64];
        let rand_route = |rng: &mut rand_chacha::ChaCha8Rng| {
            let l = lens[rng.gen_range(0..lens.len())];
            let p = (rng.gen::<u128>() & 0x0000_00ff_00ff_00ff_0000_0000_0000_0000
                | (0x2001u128 << 112))
                & mask(l);
            (p, l)
        };
        let mut f = Fib6::from_routes((0..3000).map(|i| {
            let (p, l) = rand_route(&mut rng);
            (Ipv6Addr::from(p), l, i % 50)
        }))
        .unwrap();
        for i in 0..3000 {
            let (p, l) = rand_route(&mut rng);
            if i % 2 == 0 {
                f.insert_deferred(Ipv6Addr::from(p), l, i % 50).unwrap();
            } else {
                let victim = f.routes.keys().nth(rng.gen_range(0..f.routes.len())).copied();
                if let Some((q, ql)) = victim {
                    f.remove_deferred(Ipv6Addr::from(q), ql);
                }
            }
        }
        assert!(!f.stale, "only known lengths were used");
        let fresh = Fib6::from_routes(f.iter()).unwrap();
        for _ in 0..20_000 {
            let a =
                rng.gen::<u128>() & 0x0000_00ff_00ff_00ff_ffff_0000_0000_0000 | (0x2001u128 << 112);
            assert_eq!(f.lookup(a), fresh.lookup(a), "{}", Ipv6Addr::from(a));
        }
    }

    /// The burst lookup's regions (the root at /48, candidates between /32 and /48, /29-/31
    /// expanded, busy regions and uncovered ones sent down the tree) answer as the search tree
    /// does, on a fresh build and through changes of every kind.
    #[test]
    fn burst_regions_answer_as_the_tree_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Random bits at these address positions (0 = most significant) under 2001::/16, so
        // that routes of every length nest in a few hundred /32s.
        let bits: u128 =
            [18, 20, 22, 24, 26, 29, 30, 31, 33, 35, 38, 41, 43, 46, 47, 50, 55, 60, 63]
                .iter()
                .map(|&b| 1u128 << (127 - b))
                .sum();
        let lens: [(u8, u32); 14] = [
            (19, 1),
            (29, 2),
            (30, 1),
            (32, 4),
            (33, 1),
            (36, 2),
            (40, 3),
            (41, 1),
            (44, 3),
            (46, 1),
            (48, 30),
            (52, 1),
            (56, 2),
            (64, 1),
        ];
        // Each length as often as its weight.
        let pool: Vec<u8> =
            lens.iter().flat_map(|&(l, w)| std::iter::repeat_n(l, w as usize)).collect();
        let rand_route = |rng: &mut rand_chacha::ChaCha8Rng| {
            let l = pool[rng.gen_range(0..pool.len())];
            ((rng.gen::<u128>() & bits | 0x2001u128 << 112) & mask(l), l)
        };
        // A busy region (five lengths between /32 and /48 under 2001::/32) and a /29 with
        // nothing under it (eight regions with a best route and no candidates), outside the
        // random bits so that they stay as they are.
        let base = 0x2001u128 << 112;
        let lonely = base | 1 << (127 - 10);
        let fixed = [(base, 33), (base, 36), (base, 40), (base, 41), (base, 44), (lonely, 29)];
        let mut f = Fib6::from_routes(
            (0..1500)
                .map(|_| rand_route(&mut rng))
                .chain(fixed)
                .enumerate()
                .map(|(i, (p, l))| (Ipv6Addr::from(p), l, i as u32 % 70)),
        )
        .unwrap();
        assert_eq!(f.lengths[f.root], 48);
        assert!(f.regions_on);
        let entries = f.regions.entries();
        assert_eq!(entries[&base], R_TREE, "a busy region");
        assert!(entries.values().any(|&v| v >> R_CANDS != 0 && v & R_TREE == 0));
        assert_eq!(entries[&(lonely | 7 << (128 - 32))] >> R_CANDS, 0);
        let check = |f: &Fib6, rng: &mut rand_chacha::ChaCha8Rng| {
            let addrs: Vec<u128> = (0..200)
                .map(|i| {
                    let a = rng.gen::<u128>() & (bits | u64::MAX as u128) | base;
                    if i % 16 == 0 {
                        a | lonely | rng.gen_range(0..8u128) << (128 - 32)
                    } else {
                        a
                    }
                })
                .collect();
            let mut got = vec![None; addrs.len()];
            f.lookup_burst(&addrs, &mut got);
            for (&a, &g) in addrs.iter().zip(&got) {
                assert_eq!(g, f.lookup(a), "{}", Ipv6Addr::from(a));
            }
        };
        check(&f, &mut rng);
        for i in 0..1500 {
            let (p, l) = rand_route(&mut rng);
            if i % 2 == 0 {
                f.insert(Ipv6Addr::from(p), l, i % 70).unwrap();
            } else {
                let victim = f.routes.keys().nth(rng.gen_range(0..f.routes.len())).copied();
                if let Some((q, ql)) = victim {
                    f.remove(Ipv6Addr::from(q), ql);
                }
            }
            check(&f, &mut rng);
        }
        let fresh = Fib6::from_routes(f.iter()).unwrap();
        assert_eq!(f.regions.entries(), fresh.regions.entries());
    }
}
