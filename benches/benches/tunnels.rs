//! Tunnel encapsulation and decapsulation per packet, beside plain L3 forwarding, all in one run
//! (issue 9 item 7). Every case runs the daemon's stage list (`assemble::stages(None)`: parse,
//! decap, input, route, rewrite, encap) over bursts of 64 frames refilled from templates each
//! iteration, as the pipeline bench does; the copy-only loop (refill and nothing else) is in the
//! same group so the pipeline's own cost is the difference.
//!
//! - `plain`: native routing over tables without any tunnel, and `plain_tunnels_configured`:
//!   the same packets over the tables that also hold every tunnel below (the tunnel stages' cost
//!   for non-tunnel traffic).
//! - `vxlan4`, `geneve4_2opt`, `ipip4`: routed into a point-to-point tunnel with an IPv4 outer
//!   header (UDP checksum zero, RFC 7348 5); `vxlan6_csum` / `vxlan6_zero_csum`: IPv6 outer with
//!   the UDP checksum computed, and zero as RFC 6935 allows. 64- and 1400-byte inner frames.
//! - `decap_*`: outer headers removed, inner packet routed to a native port (64-byte inner).
//!
//! The tables are small (the connected subnets, a few routes), so lookups stay in cache and the
//! figures isolate the work per packet; `l3/pipeline_burst64` in the pipeline bench shows the
//! memory cost of a full-size FIB. Before measuring, each case checks that every packet of its
//! burst is forwarded out of the expected port: a figure of drops would be worthless.
//!
//! Criterion's time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so time
//! slices lost to other work on the project's shared 2-core machines are not charged to whichever
//! case runs then (`TUNNELS_BENCH_WALL=1`: wall time). That does not help when the VM itself runs
//! slower for a while (seen here: every case 2x slower for minutes, copy-only loop included), and
//! criterion runs the cases one after the other over minutes; so `cargo bench` ends with an
//! interleaved pass ([`interleaved`]) in which every case sees the same load, and whose per-round
//! differences to plain forwarding are the figures to compare with the floor.
//! `TUNNELS_BENCH_ONLY=vxlan4_64,plain_64` limits that pass to the named cases and
//! `TUNNELS_BENCH_ROUNDS` sets its length (for a profile of one case under `perf record`).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use ferroplane_benches::interleave::{paired_median, quantile};
use ferroplane_dataplane::assemble::stages;
use ferroplane_hugepages::Policy;
use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::checksum;
use ferroplane_pipeline::flow::addr_from_ip;
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::stage::{Context, Pipeline, BURST};
use ferroplane_pipeline::tables::{NextHopSpec, PortInfo, Tables, TablesBuilder};
use ferroplane_pipeline::tunnel::{Tunnel, TunnelKind};
use ferroplane_pipeline::verdict::Verdict;

const LEFT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const RIGHT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 9, 9];
const LEFT: PortId = 0;
const RIGHT: PortId = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> [u8; 4] {
    match ip(s) {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => unreachable!(),
    }
}

fn via(s: &str) -> Vec<NextHopSpec> {
    vec![NextHopSpec { via: Some(ip(s)), dev: None, weight: 1 }]
}

fn dev(s: &str) -> Vec<NextHopSpec> {
    vec![NextHopSpec { via: None, dev: Some(s.into()), weight: 1 }]
}

/// One tunnel case: its table entry, overlay address, the inner destination prefix routed into
/// it, and its underlay peer.
struct Case {
    name: &'static str,
    kind: TunnelKind,
    local: &'static str,
    remote: &'static str,
    vni: u32,
    dst_port: u16,
    udp_checksum6: bool,
    options: Vec<u8>,
    mac: [u8; 6],
    overlay: &'static str,
    overlay_peer: &'static str,
    inner_dst: &'static str,
}

/// Two Geneve options of 4 data bytes each (class, type, length in 4-byte units, data), neither
/// critical.
fn two_options() -> Vec<u8> {
    vec![0x01, 0x02, 0x01, 0x01, 0x0a, 0x0b, 0x0c, 0x0d, 0x01, 0x02, 0x02, 0x01, 1, 2, 3, 4]
}

fn cases() -> Vec<Case> {
    let c = |name, kind, local, remote, vni, dst_port, mac_last, overlay, peer, dst| Case {
        name,
        kind,
        local,
        remote,
        vni,
        dst_port,
        udp_checksum6: true,
        options: Vec::new(),
        mac: [2, 0, 0, 0, 1, mac_last],
        overlay,
        overlay_peer: peer,
        inner_dst: dst,
    };
    let mut v = vec![
        c(
            "vx4",
            TunnelKind::Vxlan,
            "10.2.0.1",
            "10.2.0.9",
            100,
            4789,
            1,
            "10.100.0.1",
            "10.100.0.2",
            "172.16.1.0",
        ),
        c(
            "gn4",
            TunnelKind::Geneve,
            "10.2.0.1",
            "10.2.0.10",
            200,
            6081,
            2,
            "10.101.0.1",
            "10.101.0.2",
            "172.16.2.0",
        ),
        c(
            "ip4",
            TunnelKind::Ipip,
            "10.2.0.1",
            "10.2.0.11",
            0,
            0,
            3,
            "10.102.0.1",
            "",
            "172.16.3.0",
        ),
        c(
            "vx6",
            TunnelKind::Vxlan,
            "2001:db8:2::1",
            "2001:db8:2::9",
            300,
            4789,
            4,
            "10.103.0.1",
            "10.103.0.2",
            "172.16.4.0",
        ),
        c(
            "vx6z",
            TunnelKind::Vxlan,
            "2001:db8:2::1",
            "2001:db8:2::10",
            301,
            4789,
            5,
            "10.104.0.1",
            "10.104.0.2",
            "172.16.5.0",
        ),
    ];
    v[1].options = two_options();
    v[4].udp_checksum6 = false;
    v
}

/// The router: `left` (10.1.0.1, the hosts' side), `right` (10.2.0.1, the underlay), a native
/// route 198.51.100.0/24 out of `right`, and, with `with_tunnels`, every tunnel of [`cases`]
/// with a route into it, its overlay neighbour and its underlay neighbour; decapsulated packets
/// go to 192.0.2.0/24 out of `left`.
fn tables(with_tunnels: bool) -> Tables {
    let mut b = TablesBuilder::new(7);
    b.port(PortInfo {
        name: "left".into(),
        mac: LEFT_MAC,
        mtu: 1500,
        addresses: vec![(ip("10.1.0.1"), 24), (ip("2001:db8:1::1"), 64)],
    });
    b.port(PortInfo {
        name: "right".into(),
        mac: RIGHT_MAC,
        mtu: 1500,
        addresses: vec![(ip("10.2.0.1"), 24), (ip("2001:db8:2::1"), 64)],
    });
    let mut routes = vec![("198.51.100.0", via("10.2.0.2")), ("192.0.2.0", via("10.1.0.2"))];
    let mut neighbours =
        vec![(RIGHT, ip("10.2.0.2"), PEER_MAC), (LEFT, ip("10.1.0.2"), [2, 0, 0, 0, 8, 8])];
    if with_tunnels {
        for c in cases() {
            let t = Tunnel {
                name: c.name.into(),
                kind: c.kind,
                iface: 0,
                local: addr_from_ip(ip(c.local)),
                remote: Some(addr_from_ip(ip(c.remote))),
                vni: c.vni,
                dst_port: c.dst_port,
                ttl: 64,
                udp_checksum6: c.udp_checksum6,
                options: c.options.clone(),
            };
            let info = PortInfo {
                name: c.name.into(),
                mac: c.mac,
                mtu: (1500 - t.overhead()) as u16,
                addresses: vec![(ip(c.overlay), 24)],
            };
            let id = b.tunnel(info, t);
            if c.kind == TunnelKind::Ipip {
                routes.push((c.inner_dst, dev(c.name)));
            } else {
                routes.push((c.inner_dst, via(c.overlay_peer)));
                neighbours.push((id, ip(c.overlay_peer), [2, 0, 0, 0, 3, c.mac[5]]));
            }
            neighbours.push((RIGHT, ip(c.remote), [2, 0, 0, 0, 4, c.mac[5]]));
        }
    }
    for (p, hops) in routes {
        b.route(ip(p), 24, &hops, false).unwrap();
    }
    for (port, a, mac) in neighbours {
        b.neighbour(port, a, mac);
    }
    b.build().unwrap()
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let l = len.to_be_bytes();
    let mut h = vec![0x45, 0, l[0], l[1], 0, 0, 0x40, 0, 64, proto, 0, 0];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = checksum::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 UDP packet from 10.1.0.2 (flow `i`) to `dst`.`i`, `ip_len` bytes of IP.
fn inner_ip(src: [u8; 4], dst_net: [u8; 4], i: usize, ip_len: usize) -> Vec<u8> {
    let dst = [dst_net[0], dst_net[1], dst_net[2], 1 + (i % 250) as u8];
    ipv4(src, dst, 17, &udp(1024 + i as u16, 9, &vec![0; ip_len - 28]))
}

/// A burst of Ethernet frames of `frame_len` bytes (60: the 64-byte minimum without FCS) from h1
/// to `dst_net`, arriving on `left`.
fn to_router(dst_net: &str, frame_len: usize) -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let p = inner_ip(v4("10.1.0.2"), v4(dst_net), i, frame_len - 14);
            eth(LEFT_MAC, [2, 0, 0, 0, 8, 8], 0x0800, &p)
        })
        .collect()
}

/// A burst of tunnel packets from `c`'s remote to us, arriving on `right`, each carrying a
/// 60-byte inner frame to 192.0.2.0/24.
fn from_tunnel(c: &Case) -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let inner = inner_ip(v4("172.16.9.5"), v4("192.0.2.0"), i, 46);
            let outer = match c.kind {
                TunnelKind::Ipip => ipv4(v4(c.remote), v4(c.local), 4, &inner),
                _ => {
                    let frame = eth(c.mac, [2, 0, 0, 0, 3, c.mac[5]], 0x0800, &inner);
                    let v = c.vni.to_be_bytes();
                    let mut h = match c.kind {
                        TunnelKind::Vxlan => vec![0x08, 0, 0, 0, v[1], v[2], v[3], 0],
                        _ => vec![(c.options.len() / 4) as u8, 0, 0x65, 0x58, v[1], v[2], v[3], 0],
                    };
                    h.extend_from_slice(&c.options);
                    h.extend_from_slice(&frame);
                    let u = udp(0xc000 + i as u16, c.dst_port, &h);
                    ipv4(v4(c.remote), v4(c.local), 17, &u)
                }
            };
            eth(RIGHT_MAC, [2, 0, 0, 0, 4, c.mac[5]], 0x0800, &outer)
        })
        .collect()
}

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// criterion measurement: the benchmark thread's CPU time in ns (see the module documentation).
struct ThreadCpuTime;

/// Formats ns values and element throughputs as criterion's wall-time formatter does.
struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else {
            (1e-6, "ms")
        };
        for v in values {
            *v *= factor;
        }
        unit
    }

    fn scale_throughputs(&self, _: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => n,
        };
        for v in values {
            *v = n as f64 * 1e3 / *v;
        }
        "M/s"
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

fn refill(burst: &mut [PacketBuf], frames: &[Vec<u8>], in_port: PortId) {
    for (b, f) in burst.iter_mut().zip(frames) {
        let _ = b.fill_from(f);
        b.meta.in_port = in_port;
    }
}

/// Runs the pipeline once over a case's frames and checks that every packet leaves by the
/// case's port with its total length: the figures measure forwarding, not drops or punts.
fn check(bench: &Bench<'_>, pipeline: &mut Pipeline, burst: &mut [PacketBuf]) {
    let (what, t, frames, in_port, out, out_len) = bench;
    let (in_port, out, out_len) = (*in_port, *out, *out_len);
    refill(burst, frames, in_port);
    pipeline.run(&Context { tables: t, now_ns: 0 }, burst);
    for (i, b) in burst.iter().enumerate() {
        assert_eq!(b.meta.verdict, Verdict::Forward(out), "{what}: packet {i}: {:?}", b.meta);
        assert_eq!(b.len(), out_len, "{what}: packet {i}: length");
        let d = b.data();
        assert_ne!(&d[0..6], &[0xff; 6], "{what}: packet {i}: unresolved neighbour");
        let ours = if out == RIGHT { RIGHT_MAC } else { LEFT_MAC };
        assert_eq!(&d[6..12], &ours, "{what}: packet {i}: source MAC");
    }
}

/// IPv6 outer: the UDP checksum over the pseudo-header verifies (or is zero when it must be).
fn check_udp6(burst: &[PacketBuf], computed: bool) {
    for b in burst {
        let d = b.data();
        let ip6 = &d[14..54];
        let seg = &d[54..];
        let src: [u8; 16] = ip6[8..24].try_into().unwrap();
        let dst: [u8; 16] = ip6[24..40].try_into().unwrap();
        let c = u16::from_be_bytes([seg[6], seg[7]]);
        if computed {
            let ph = checksum::pseudo_header_v6(&src, &dst, 17, seg.len() as u32);
            assert_eq!(checksum::finish(checksum::combine(ph, checksum::sum(seg))), 0);
        } else {
            assert_eq!(c, 0);
        }
    }
}

/// One case: name, tables, template frames, in port, expected out port, expected length out.
type Bench<'a> = (String, &'a Tables, Vec<Vec<u8>>, PortId, PortId, usize);

/// Rounds of the interleaved pass (each round runs every case once); `TUNNELS_BENCH_ROUNDS`
/// sets another number (a profile wants more).
const ROUNDS: usize = 4000;

/// The cases the interleaved pass runs: all, or with `TUNNELS_BENCH_ONLY=a,b` those whose name
/// is one of the comma-separated names (to profile one case alone).
fn selected(name: &str) -> bool {
    match std::env::var("TUNNELS_BENCH_ONLY") {
        Ok(only) => only.split(',').any(|w| name == w),
        Err(_) => true,
    }
}

/// Every case in turn, one burst each, timed one burst at a time, for [`ROUNDS`] rounds: all
/// cases see the same machine load, which on a shared machine drifts over the minutes criterion
/// takes case after case. Prints per packet the 10th percentile and the median of each case, and
/// the median of the per-round differences to plain forwarding of the same frame size (paired
/// in time, so load that comes and goes cancels out).
fn interleaved(benches: &[Bench<'_>], pipeline: &mut Pipeline, burst: &mut [PacketBuf]) {
    let rounds = std::env::var("TUNNELS_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok());
    let rounds = rounds.unwrap_or(ROUNDS);
    let benches: Vec<&Bench<'_>> = benches.iter().filter(|b| selected(&b.0)).collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); benches.len()];
    for _ in 0..rounds {
        for (i, (name, t, frames, inp, _, _)) in benches.iter().enumerate() {
            let start = std::time::Instant::now();
            refill(burst, frames, *inp);
            if !name.starts_with("copy_only") {
                pipeline.run(&Context { tables: t, now_ns: 0 }, burst);
            }
            black_box(&mut *burst);
            samples[i].push(start.elapsed().as_nanos() as f64 / BURST as f64);
        }
    }
    println!(
        "\ninterleaved: {rounds} rounds over every case, ns per packet (wall time per burst / 64)"
    );
    println!(
        "{:<32} {:>7} {:>7} {:>16} {:>16}",
        "case", "p10", "median", "- plain (paired)", "- plain+tunnels"
    );
    for (i, (name, ..)) in benches.iter().enumerate() {
        let size = name.rsplit('_').next().unwrap_or("");
        let paired = |base: &str| {
            let Some(j) = benches.iter().position(|b| b.0 == format!("{base}_{size}")) else {
                return f64::NAN;
            };
            paired_median(&samples[i], &samples[j])
        };
        println!(
            "{name:<32} {:>7.1} {:>7.1} {:>+16.1} {:>+16.1}",
            quantile(&samples[i], 0.1),
            quantile(&samples[i], 0.5),
            paired("plain"),
            paired("plain_tunnels_configured"),
        );
    }
}

fn tunnels<M: Measurement>(c: &mut Criterion<M>) {
    let plain = tables(false);
    let tun = tables(true);
    let mut pool = Pool::new(BURST, Policy::PreferHuge).unwrap();
    let mut burst: Vec<PacketBuf> = (0..BURST).map(|_| pool.alloc().unwrap()).collect();
    let mut pipeline = Pipeline::new(stages(None));
    let cases = cases();

    let mut benches: Vec<Bench<'_>> = Vec::new();
    for len in [60usize, 1400] {
        // The wire size with FCS, as the figures are usually quoted (64, 1404).
        let tag = if len == 60 { "64".to_string() } else { len.to_string() };
        benches.push((
            format!("copy_only_{tag}"),
            &plain,
            to_router("198.51.100.0", len),
            LEFT,
            LEFT,
            len,
        ));
        benches.push((
            format!("plain_{tag}"),
            &plain,
            to_router("198.51.100.0", len),
            LEFT,
            RIGHT,
            len,
        ));
        benches.push((
            format!("plain_tunnels_configured_{tag}"),
            &tun,
            to_router("198.51.100.0", len),
            LEFT,
            RIGHT,
            len,
        ));
        for (cs, label) in
            cases.iter().zip(["vxlan4", "geneve4_2opt", "ipip4", "vxlan6_csum", "vxlan6_zero_csum"])
        {
            let probe = Tunnel {
                name: String::new(),
                kind: cs.kind,
                iface: 0,
                local: addr_from_ip(ip(cs.local)),
                remote: None,
                vni: 0,
                dst_port: 0,
                ttl: 0,
                udp_checksum6: false,
                options: cs.options.clone(),
            };
            // The overhead counts the outer headers and the inner Ethernet header that IP-in-IP
            // drops and VXLAN/Geneve keep; the outer Ethernet header replaces it in both cases.
            let out_len = len + probe.overhead();
            benches.push((
                format!("{label}_{tag}"),
                &tun,
                to_router(cs.inner_dst, len),
                LEFT,
                RIGHT,
                out_len,
            ));
        }
    }
    for (cs, label) in cases.iter().zip(["decap_vxlan4", "decap_geneve4_2opt", "decap_ipip4"]) {
        benches.push((format!("{label}_64"), &tun, from_tunnel(cs), RIGHT, LEFT, 60));
    }

    for bench in &benches {
        let name = &bench.0;
        if name.starts_with("copy_only") {
            continue;
        }
        check(bench, &mut pipeline, &mut burst);
        if name.starts_with("vxlan6_csum") {
            check_udp6(&burst, true);
        } else if name.starts_with("vxlan6_zero") {
            check_udp6(&burst, false);
        }
    }

    let mut g = c.benchmark_group("tunnels");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, t, frames, inp, _, _) in &benches {
        if name.starts_with("copy_only") {
            g.bench_function(name.as_str(), |b| {
                b.iter(|| {
                    refill(&mut burst, frames, *inp);
                    black_box(&mut burst);
                })
            });
            continue;
        }
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                refill(&mut burst, frames, *inp);
                let cx = Context { tables: t, now_ns: 0 };
                pipeline.run(&cx, &mut burst);
                black_box(&mut burst);
            })
        });
    }
    g.finish();
    // `cargo bench` passes --bench; `cargo test --benches` runs each case once and skips this.
    if std::env::args().any(|a| a == "--bench") {
        interleaved(&benches, &mut pipeline, &mut burst);
    }
}

fn config<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    c.sample_size(30)
        .without_plots()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3))
}

fn main() {
    if std::env::var_os("TUNNELS_BENCH_WALL").is_some() {
        let mut c = config(Criterion::default().with_measurement(WallTime)).configure_from_args();
        tunnels(&mut c);
    } else {
        let mut c =
            config(Criterion::default().with_measurement(ThreadCpuTime)).configure_from_args();
        tunnels(&mut c);
    }
    Criterion::default().configure_from_args().final_summary();
}
