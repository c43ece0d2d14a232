//! The parse stage per frame, beside etherparse (`SlicedPacket::from_ethernet` plus reading the
//! 5-tuple from its slices) over the very same frames in the same run.
//!
//! The mix is what a router sees: IPv4 UDP and TCP, IPv6 UDP and TCP, and 802.1Q-tagged IPv4,
//! 64 to 1514 bytes. Ours does more per frame than the baseline: it also verifies the IPv4
//! header checksum, walks IPv6 extension headers with a bound, and computes the symmetric flow
//! hash; etherparse only slices. Both must accept every frame, or the figure means nothing.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use ferroplane_pipeline::meta::Meta;
use ferroplane_pipeline::parse::parse;

const FRAMES: usize = 64;

fn frames() -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(FRAMES);
    for i in 0..FRAMES {
        let payload = vec![0xa5u8; [18, 200, 1000, 1400][i % 4]];
        let src = [0x02, 0, 0, 0, 0, 1];
        let dst = [0x02, 0, 0, 0, 0, 2];
        let sport = 1024 + i as u16;
        let mut f = Vec::with_capacity(1600);
        macro_rules! emit {
            ($b:expr) => {{
                let b = $b;
                b.write(&mut f, &payload).unwrap();
            }};
        }
        match i % 5 {
            0 => emit!(PacketBuilder::ethernet2(src, dst)
                .ipv4([10, 1, 0, 2], [198, 51, 100, i as u8], 64)
                .udp(sport, 9)),
            1 => emit!(PacketBuilder::ethernet2(src, dst)
                .ipv4([10, 1, 0, 2], [198, 51, 100, i as u8], 64)
                .tcp(sport, 80, 1, 65535)),
            2 => emit!(PacketBuilder::ethernet2(src, dst)
                .ipv6(
                    [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    {
                        let mut d = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                        d[15] = i as u8;
                        d
                    },
                    64
                )
                .udp(sport, 9)),
            3 => emit!(PacketBuilder::ethernet2(src, dst)
                .ipv6(
                    [0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
                    64,
                )
                .tcp(sport, 443, 7, 65535)),
            _ => emit!(PacketBuilder::ethernet2(src, dst)
                .single_vlan(100.try_into().unwrap())
                .ipv4([10, 1, 0, 2], [198, 51, 100, i as u8], 64)
                .udp(sport, 9)),
        }
        if f.len() < 60 {
            f.resize(60, 0);
        }
        out.push(f);
    }
    out
}

/// Source, destination (IPv4 mapped into 16 bytes), protocol, source port, destination port.
type Tuple = ([u8; 16], [u8; 16], u8, u16, u16);

/// The 5-tuple from etherparse's slices, as the parse stage records it.
#[inline]
fn etherparse_tuple(f: &[u8]) -> Option<Tuple> {
    let p = SlicedPacket::from_ethernet(f).ok()?;
    let (src, dst, proto) = match p.net? {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[12..].copy_from_slice(&h.source());
            d[12..].copy_from_slice(&h.destination());
            (s, d, h.protocol().0)
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            (h.source(), h.destination(), v6.payload().ip_number.0)
        }
    };
    let (sp, dp) = match p.transport? {
        TransportSlice::Udp(u) => (u.source_port(), u.destination_port()),
        TransportSlice::Tcp(t) => (t.source_port(), t.destination_port()),
        _ => (0, 0),
    };
    Some((src, dst, proto, sp, dp))
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let mut meta = Meta::default();
    for f in &frames {
        assert!(parse(f, &mut meta, 7).is_ok(), "ours refuses a frame of the mix");
        assert!(etherparse_tuple(f).is_some(), "etherparse refuses a frame of the mix");
    }
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(FRAMES as u64));
    g.bench_function("ferroplane_mix64", |b| {
        b.iter(|| {
            for f in &frames {
                let _ = black_box(parse(black_box(f), &mut meta, 7));
            }
            black_box(&meta);
        })
    });
    g.bench_function("etherparse_mix64", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(etherparse_tuple(black_box(f)));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
