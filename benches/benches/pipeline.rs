//! The whole L3 pipeline (parse, input, route, rewrite) per packet over bursts of 64-byte IPv4
//! UDP frames, beside a copy-only loop that does what receive does (frame into buffer, metadata
//! reset) and nothing else, over the same frames in the same run; and the full worker poll over
//! in-memory ports (inject, receive, pipeline, transmit, drain).
//!
//! The router holds a full-size table (1M BGP-like IPv4 prefixes) and the frames' destinations
//! are drawn from inside its prefixes, 256 different bursts in turn, so lookups touch the table
//! the way a busy router's do rather than one hot cache line.

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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

/// 256 bursts of 64 frames whose destinations lie inside the table's prefixes.
fn bursts() -> Vec<Vec<Vec<u8>>> {
    let table = ferroplane_benches::routes::ipv4_table(1_000_000, 42);
    let dests = ferroplane_benches::routes::ipv4_destinations(&table, BURST * BURSTS, 7);
    dests
        .chunks_exact(BURST)
        .map(|c| c.iter().enumerate().map(|(i, &d)| frame(i as u16, d)).collect())
        .collect()
}

/// A two-port router with a full-size IPv4 table (1M BGP-like prefixes) plus the bench's route.
fn tables() -> Tables {
    let mut b = TablesBuilder::new(7);
    b.port(PortInfo {
        name: "l".into(),
        mac: [2, 0, 0, 0, 0, 1],
        mtu: 1500,
        addresses: vec![("10.1.0.1".parse().unwrap(), 24)],
    });
    b.port(PortInfo {
        name: "r".into(),
        mac: [2, 0, 0, 0, 0, 2],
        mtu: 1500,
        addresses: vec![("10.2.0.1".parse().unwrap(), 24)],
    });
    let hops: Vec<NextHopSpec> = ["10.2.0.2", "10.2.0.3"]
        .iter()
        .map(|a| NextHopSpec { via: Some(a.parse().unwrap()), dev: None, weight: 1 })
        .collect();
    for (p, len) in ferroplane_benches::routes::ipv4_table(1_000_000, 42) {
        let _ = b.route(IpAddr::V4(p), len, &hops, false);
    }
    b.route("198.51.100.0".parse().unwrap(), 24, &hops, false).unwrap();
    b.neighbour(1, "10.2.0.2".parse().unwrap(), [2, 0, 0, 0, 2, 2]);
    b.neighbour(1, "10.2.0.3".parse().unwrap(), [2, 0, 0, 0, 2, 3]);
    b.build().unwrap()
}

fn refill(burst: &mut [PacketBuf], frames: &[Vec<u8>]) {
    for (b, f) in burst.iter_mut().zip(frames) {
        let _ = b.fill_from(f);
    }
}

fn l3(c: &mut Criterion) {
    let t = tables();
    let all = bursts();
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
    // Every packet must have been forwarded, or the figure measures drops.
    assert!(burst
        .iter()
        .all(|b| matches!(b.meta.verdict, ferroplane_pipeline::verdict::Verdict::Forward(1))));
}

fn worker(c: &mut Criterion) {
    let all = bursts();
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
