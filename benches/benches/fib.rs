//! FIB longest-prefix match over a full Internet-size table, beside `prefix-trie` (a plain
//! binary trie, as most Rust LPM crates are) doing the same lookups in the same run.
//!
//! - `fib4/lookup_burst_1M`, `fib4/prefix_trie_1M`: bursts of 64 destinations over a BGP-like
//!   table of 1,000,000 IPv4 prefixes; throughput is per lookup.
//! - `fib4/plain_dir24_8_1M`: the same lookups in a textbook DIR-24-8 (one flat `Vec<u32>` of
//!   2^24 entries plus 256-entry groups, one lookup at a time): the floor for this layout on this
//!   machine at this moment, which tells what our burst lookup gains and how loaded the host is.
//! - `fib6/lookup_burst_200k`, `fib6/prefix_trie_200k`: the same with 200,000 IPv6 prefixes.
//! - `fib4/build_1M`, `fib6/build_200k`: bulk build of the table from an unsorted list.
//!
//! Destinations are drawn uniformly from inside the table's prefixes, and each iteration takes
//! the next of 16,384 distinct bursts, so the table is as cold as a busy router's.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use ferroplane_benches::routes;
use ferroplane_pipeline::fib::{Fib4, Fib6, NextHopId};
use prefix_trie::PrefixMap;

const BURST: usize = 64;
const BURSTS: usize = 16_384;

/// Next hops spread over a few thousand groups, as a router with many peers has.
fn with_next_hops<A: Copy>(table: &[(A, u8)]) -> Vec<(A, u8, NextHopId)> {
    table.iter().enumerate().map(|(i, &(p, l))| (p, l, (i % 4093) as NextHopId)).collect()
}

/// Runs `lookup` over the next burst on each iteration.
fn bursts<'a, A>(
    dests: &'a [A],
    mut lookup: impl FnMut(&[A], &mut [Option<NextHopId>]) + 'a,
) -> impl FnMut() + 'a {
    let mut out = [None; BURST];
    let mut next = 0;
    let dests: Vec<&[A]> = dests.chunks_exact(BURST).collect();
    move || {
        lookup(black_box(dests[next]), &mut out);
        black_box(&out);
        next += 1;
        if next == dests.len() {
            next = 0;
        }
    }
}

/// DIR-24-8 as in the textbooks and DPDK's `rte_lpm`: `tbl24[addr >> 8]` is a next hop + 1 (0:
/// none) or, with the top bit set, the index of a 256-entry group in `tbl8`.
struct PlainDir24 {
    tbl24: Vec<u32>,
    tbl8: Vec<u32>,
}

impl PlainDir24 {
    const EXT: u32 = 1 << 31;

    /// Copies what `fib` answers, so that both give the same next hops.
    fn from_fib(fib: &Fib4, routes: &[(Ipv4Addr, u8, NextHopId)]) -> Self {
        let answer = |a: u32| fib.lookup(a).map_or(0, |nh| nh + 1);
        let mut tbl24: Vec<u32> = (0..1u32 << 24).map(|i| answer(i << 8)).collect();
        let mut tbl8 = Vec::new();
        for &(p, len, _) in routes {
            let i = (u32::from(p) >> 8) as usize;
            if len > 24 && tbl24[i] & Self::EXT == 0 {
                tbl24[i] = Self::EXT | (tbl8.len() / 256) as u32;
                tbl8.extend((0..256).map(|j| answer((i as u32) << 8 | j)));
            }
        }
        PlainDir24 { tbl24, tbl8 }
    }

    #[inline]
    fn lookup(&self, a: u32) -> Option<NextHopId> {
        let mut e = self.tbl24[(a >> 8) as usize];
        if e & Self::EXT != 0 {
            e = self.tbl8[((e & !Self::EXT) as usize) << 8 | (a & 0xff) as usize];
        }
        e.checked_sub(1)
    }
}

fn fib4(c: &mut Criterion) {
    let table = routes::ipv4_table(1_000_000, 42);
    let routes = with_next_hops(&table);
    let fib = Fib4::from_routes(routes.iter().copied()).unwrap();
    let mut baseline = PrefixMap::<(u32, u8), NextHopId>::new();
    for &(p, l, nh) in &routes {
        baseline.insert((u32::from(p), l), nh);
    }
    let dests = routes::ipv4_destinations(&table, BURST * BURSTS, 7);
    // Both must give the same answers, or the comparison means nothing.
    for &a in &dests {
        assert_eq!(fib.lookup(a), baseline.get_lpm(&(a, 32)).map(|(_, &nh)| nh));
    }
    println!(
        "fib4: {} prefixes, {:.1} MiB",
        fib.len(),
        fib.memory_bytes() as f64 / (1 << 20) as f64
    );

    let mut g = c.benchmark_group("fib4");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("lookup_burst_1M", |b| {
        b.iter(bursts(&dests, |burst, out| fib.lookup_burst(burst, out)))
    });
    let plain = PlainDir24::from_fib(&fib, &routes);
    assert!(dests.iter().all(|&a| plain.lookup(a) == fib.lookup(a)));
    g.bench_function("plain_dir24_8_1M", |b| {
        b.iter(bursts(&dests, |burst, out| {
            for (o, &a) in out.iter_mut().zip(burst) {
                *o = plain.lookup(a);
            }
        }))
    });
    drop(plain);
    g.bench_function("prefix_trie_1M", |b| {
        b.iter(bursts(&dests, |burst, out| {
            for (o, &a) in out.iter_mut().zip(burst) {
                *o = baseline.get_lpm(&(a, 32)).map(|(_, &nh)| nh);
            }
        }))
    });
    drop(baseline);

    g.throughput(Throughput::Elements(routes.len() as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function("build_1M", |b| {
        b.iter_with_large_drop(|| Fib4::from_routes(routes.iter().copied()).unwrap())
    });
    g.finish();
}

fn fib6(c: &mut Criterion) {
    let table = routes::ipv6_table(200_000, 42);
    let routes = with_next_hops(&table);
    let fib = Fib6::from_routes(routes.iter().copied()).unwrap();
    let mut baseline = PrefixMap::<(u128, u8), NextHopId>::new();
    for &(p, l, nh) in &routes {
        baseline.insert((u128::from(p), l), nh);
    }
    let dests = routes::ipv6_destinations(&table, BURST * BURSTS, 7);
    for &a in &dests {
        assert_eq!(fib.lookup(a), baseline.get_lpm(&(a, 128)).map(|(_, &nh)| nh));
    }
    println!(
        "fib6: {} prefixes, {:.1} MiB",
        fib.len(),
        fib.memory_bytes() as f64 / (1 << 20) as f64
    );

    let mut g = c.benchmark_group("fib6");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("lookup_burst_200k", |b| {
        b.iter(bursts(&dests, |burst, out| fib.lookup_burst(burst, out)))
    });
    g.bench_function("prefix_trie_200k", |b| {
        b.iter(bursts(&dests, |burst, out| {
            for (o, &a) in out.iter_mut().zip(burst) {
                *o = baseline.get_lpm(&(a, 128)).map(|(_, &nh)| nh);
            }
        }))
    });
    g.throughput(Throughput::Elements(routes.len() as u64));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function("build_200k", |b| {
        b.iter_with_large_drop(|| Fib6::from_routes(routes.iter().copied()).unwrap())
    });
    g.finish();

    // Run-time changes: one route in and out again of the full table, incrementally, beside
    // the full rebuild that each change cost before.
    let mut g = c.benchmark_group("fib6_update");
    g.throughput(Throughput::Elements(1));
    let mut live = fib.clone();
    let mut i = 0usize;
    g.bench_function("insert_remove_one_200k", |b| {
        b.iter(|| {
            let (p, l, nh) = routes[i % routes.len()];
            i += 7919;
            live.remove_deferred(p, l);
            live.insert_deferred(p, l, nh).unwrap();
            live.finish_batch();
        })
    });
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function("full_rebuild_200k", |b| b.iter(|| live.rebuild()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = fib4, fib6
}
criterion_main!(benches);
