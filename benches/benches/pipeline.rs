//! The whole L3 pipeline (parse, input, route, rewrite) per packet over bursts of 64-byte IPv4
//! UDP frames (and 62-byte IPv6 ones), beside a copy-only loop that does what receive does
//! (frame into buffer, metadata reset) and nothing else, over the same frames in the same run;
//! and the full worker poll over in-memory ports (inject, receive, pipeline, transmit, drain).
//!
//! The router holds full-size tables (1M BGP-like IPv4 prefixes, 200k IPv6) and the frames'
//! destinations are drawn from inside their prefixes, 256 different bursts in turn, so lookups
//! touch the tables the way a busy router's do rather than one hot cache line.
//!
//! This VM's speed drifts by 2x over minutes (the copy-only loop itself has measured 3 to 24 ns
//! a packet on different days), and criterion runs one case after the other; so `cargo bench`
//! ends with an interleaved pass ([`interleaved`], `ferroplane_benches::interleave`): the eight
//! cases in turn, one burst each, for thousands of rounds, so they see the same load, with the
//! pipeline's own cost as the per-round difference to the copy-only loop. Those are the figures
//! the README quotes. `PIPELINE_BENCH_ONLY=v6,copy_v6` limits that pass to the cases with those
//! keys (see [`CASES`]) and `PIPELINE_BENCH_ROUNDS` sets its length, for a profile or an
//! instruction count of one case (`BENCH=pipeline scripts/instr-count.sh v6`).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferroplane_benches::interleave::{paired_median, quantile};
use ferroplane_hugepages::Policy;
use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::stage::{Context, Pipeline, BURST};
use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, Tables, TablesBuilder};

const BURSTS: usize = 256;

fn frame(i: u16, dst: u32) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 2, 0x08, 0x00];
    let mut ip = [0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 2, 0, 0, 0, 0];
    ip[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = ferroplane_pipeline::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(1024 + i).to_be_bytes());
    f.extend_from_slice(&[0, 9, 0, 26, 0, 0]);
    f.resize(60, 0);
    f
}

/// A 62-byte IPv6 UDP frame from `fd00:1::2` to `dst` (no payload; the UDP checksum is left 0,
/// which nothing on the forwarding path reads).
fn frame6(i: u16, dst: u128) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 1, 2, 0x86, 0xdd];
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
    f.extend_from_slice(&(0xfd00_0001u128 << 96 | 2).to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    f.extend_from_slice(&(1024 + i).to_be_bytes());
    f.extend_from_slice(&[0, 9, 0, 8, 0, 0]);
    f
}

/// 256 bursts of 64 IPv6 frames whose destinations lie inside the 200k-prefix IPv6 table's.
fn bursts6() -> Vec<Vec<Vec<u8>>> {
    let table = ferroplane_benches::routes::ipv6_table(200_000, 42);
    let dests = ferroplane_benches::routes::ipv6_destinations(&table, BURST * BURSTS, 7);
    dests
        .chunks_exact(BURST)
        .map(|c| c.iter().enumerate().map(|(i, &d)| frame6(i as u16, d)).collect())
        .collect()
}

/// 256 bursts of 64 frames whose destinations lie inside the table's prefixes (the first
/// `prefixes` of them).
fn bursts(prefixes: usize) -> Vec<Vec<Vec<u8>>> {
    let table = ferroplane_benches::routes::ipv4_table(1_000_000, 42);
    let dests =
        ferroplane_benches::routes::ipv4_destinations(&table[..prefixes], BURST * BURSTS, 7);
    dests
        .chunks_exact(BURST)
        .map(|c| c.iter().enumerate().map(|(i, &d)| frame(i as u16, d)).collect())
        .collect()
}

/// A two-port router with full-size tables (1M BGP-like IPv4 prefixes, 200k IPv6) plus the
/// bench's route, every route over a two-way ECMP group.
fn tables() -> Tables {
    let mut b = TablesBuilder::new(7);
    b.port(PortInfo {
        name: "l".into(),
        mac: [2, 0, 0, 0, 0, 1],
        mtu: 1500,
        addresses: vec![("10.1.0.1".parse().unwrap(), 24), ("fd00:1::1".parse().unwrap(), 64)],
    });
    b.port(PortInfo {
        name: "r".into(),
        mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        addresses: vec![("10.2.0.1".parse().unwrap(), 24), ("fd00:2::1".parse().unwrap(), 64)],
    });
    let via = |hops: [&str; 2]| -> Vec<NextHopSpec> {
        hops.iter()
            .map(|a| NextHopSpec { via: Some(a.parse().unwrap()), dev: None, weight: 1 })
            .collect()
    };
    let (hops, hops6) = (via(["10.2.0.2", "10.2.0.3"]), via(["fd00:2::2", "fd00:2::3"]));
    for (p, len) in ferroplane_benches::routes::ipv4_table(1_000_000, 42) {
        let _ = b.route(IpAddr::V4(p), len, &hops, false);
    }
    for (p, len) in ferroplane_benches::routes::ipv6_table(200_000, 42) {
        let _ = b.route(IpAddr::V6(p), len, &hops6, false);
    }
    b.route("198.51.100.0".parse().unwrap(), 24, &hops, false).unwrap();
    for (i, a) in ["10.2.0.2", "10.2.0.3", "fd00:2::2", "fd00:2::3"].iter().enumerate() {
        b.neighbour(1, a.parse().unwrap(), [2, 0, 0, 0, 2, 2 + (i as u8 & 1)]);
    }
    b.build().unwrap()
}

fn refill(burst: &mut [PacketBuf], frames: &[Vec<u8>]) {
    for (b, f) in burst.iter_mut().zip(frames) {
        let _ = b.fill_from(f);
    }
}

fn l3(c: &mut Criterion) {
    let t = tables();
    let all = bursts(1_000_000);
    let all6 = bursts6();
    let mut next = 0;
    let mut pool = Pool::new(BURST, Policy::PreferHuge).unwrap();
    let mut burst: Vec<PacketBuf> = (0..BURST).map(|_| pool.alloc().unwrap()).collect();
    // The daemon's own stage list (tunnel decap/encap included: with no tunnel configured they
    // cost one check per burst).
    let mut pipeline = Pipeline::new(ferroplane_dataplane::assemble::stages(None));
    let mut g = c.benchmark_group("l3");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("copy_only_burst64", |b| {
        b.iter(|| {
            refill(&mut burst, &all[next]);
            next = (next + 1) % BURSTS;
            black_box(&mut burst);
        })
    });
    g.bench_function("pipeline_burst64", |b| {
        b.iter(|| {
            refill(&mut burst, &all[next]);
            next = (next + 1) % BURSTS;
            let cx = Context { tables: &t, now_ns: 0 };
            pipeline.run(&cx, &mut burst);
            black_box(&mut burst);
        })
    });
    g.bench_function("pipeline_v6_burst64", |b| {
        b.iter(|| {
            refill(&mut burst, &all6[next]);
            next = (next + 1) % BURSTS;
            let cx = Context { tables: &t, now_ns: 0 };
            pipeline.run(&cx, &mut burst);
            black_box(&mut burst);
        })
    });
    // The same burst every time: the table entries it needs stay in cache, which isolates the
    // pipeline's own work from the memory latency of a full-size table.
    g.bench_function("pipeline_burst64_hot", |b| {
        b.iter(|| {
            refill(&mut burst, &all[0]);
            let cx = Context { tables: &t, now_ns: 0 };
            pipeline.run(&cx, &mut burst);
            black_box(&mut burst);
        })
    });
    g.finish();
    // Every packet must be forwarded, or the figures measure drops.
    for frames in [&all[BURSTS - 1], &all6[BURSTS - 1]] {
        refill(&mut burst, frames);
        pipeline.run(&Context { tables: &t, now_ns: 0 }, &mut burst);
        assert!(burst
            .iter()
            .all(|b| matches!(b.meta.verdict, ferroplane_pipeline::verdict::Verdict::Forward(1))));
    }
    // `cargo bench` passes --bench; `cargo test --benches` runs each case once and skips this.
    if std::env::args().any(|a| a == "--bench") {
        interleaved(&t, &all, &all6, &mut pipeline, &mut burst);
    }
}

/// Rounds of the interleaved pass (each runs every case once, on the next of the 256 bursts);
/// `PIPELINE_BENCH_ROUNDS` sets another number.
const ROUNDS: usize = 20_000;

/// The interleaved pass's cases: (key for `PIPELINE_BENCH_ONLY`, name printed). Pipeline cases
/// sit at odd indices, each after the copy-only loop over the same frames.
const CASES: [(&str, &str); 8] = [
    ("copy", "copy_only"),
    ("full", "pipeline (1M prefixes)"),
    ("copy_hot", "copy_only (hot burst)"),
    ("hot", "pipeline (hot burst)"),
    ("copy_few", "copy_only (32 prefixes)"),
    ("few", "pipeline (32 prefixes)"),
    ("copy_v6", "copy_only (IPv6)"),
    ("v6", "pipeline (IPv6, 200k)"),
];

/// Whether the interleaved pass runs the case with this key: all, or with
/// `PIPELINE_BENCH_ONLY=a,b` those named.
fn selected(key: &str) -> bool {
    match std::env::var("PIPELINE_BENCH_ONLY") {
        Ok(only) => only.split(',').any(|w| key == w),
        Err(_) => true,
    }
}

/// The copy-only loop and the pipeline over the full table (the next of the 256 bursts each
/// round), then both again on one hot burst, then both on 256 bursts whose destinations lie in
/// just 32 of the table's prefixes, then both on IPv6 frames over the 200k IPv6 prefixes, in
/// turn, one burst each, timed one burst at a time. The third pair tells the two costs of the
/// first apart: its table entries stay in cache like the hot burst's, but its packets differ
/// burst to burst like the full table's, so branches that depend on the packet cannot be
/// learnt by the predictor from one repeated burst.
///
/// Prints per packet the 10th percentile and the median of each, and the median of the
/// per-round differences to the copy-only loop over the same frames (paired in time, so load
/// that comes and goes cancels out): the pipeline's own cost.
fn interleaved(
    t: &Tables,
    all: &[Vec<Vec<u8>>],
    all6: &[Vec<Vec<u8>>],
    pipeline: &mut Pipeline,
    burst: &mut [PacketBuf],
) {
    let rounds = std::env::var("PIPELINE_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok());
    let rounds = rounds.unwrap_or(ROUNDS);
    let on: Vec<bool> = CASES.iter().map(|(key, _)| selected(key)).collect();
    let few = bursts(32);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); CASES.len()];
    for round in 0..rounds {
        for (case, s) in samples.iter_mut().enumerate() {
            if !on[case] {
                continue;
            }
            let frames = match case {
                0 | 1 => &all[round % BURSTS],
                2 | 3 => &all[0],
                4 | 5 => &few[round % BURSTS],
                _ => &all6[round % BURSTS],
            };
            let start = std::time::Instant::now();
            refill(burst, frames);
            if case % 2 == 1 {
                pipeline.run(&Context { tables: t, now_ns: 0 }, burst);
            }
            black_box(&mut *burst);
            s.push(start.elapsed().as_nanos() as f64 / BURST as f64);
        }
    }
    println!("\ninterleaved: {rounds} rounds, ns per packet (wall time per burst / 64)");
    println!("{:<26} {:>7} {:>7} {:>20}", "case", "p10", "median", "- copy_only (paired)");
    for (i, (_, name)) in CASES.iter().enumerate().filter(|&(i, _)| on[i]) {
        let copy = i / 2 * 2;
        let paired = if on[copy] {
            format!("{:+.1}", paired_median(&samples[i], &samples[copy]))
        } else {
            "-".to_string()
        };
        println!(
            "{name:<26} {:>7.1} {:>7.1} {paired:>20}",
            quantile(&samples[i], 0.1),
            quantile(&samples[i], 0.5),
        );
    }
}

fn worker(c: &mut Criterion) {
    let all = bursts(1_000_000);
    let mut next = 0;
    let mut r = ferroplane_dataplane::offline::OfflineRouter::new(tables()).unwrap();
    let mut g = c.benchmark_group("worker");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("memory_ports_poll_burst64", |b| {
        b.iter(|| {
            for f in &all[next] {
                r.inject(0, f, 0);
            }
            next = (next + 1) % BURSTS;
            let n = r.poll(0);
            r.drain_tx(|_, f, _| {
                black_box(f);
            });
            n
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = l3, worker
}
criterion_main!(benches);
