//! DPDK ports in process, on DPDK's software devices: net_ring (its queue i transmits into its
//! own receive queue i, so several queues show up as several independent loops) and net_pcap.
//! EAL starts once for this whole binary with every device the tests use; a machine without
//! DPDK fails here, loudly (the binary does not even build without the `dpdk` feature).

use std::path::PathBuf;
use std::sync::OnceLock;

use ferroplane_dataplane::port::dpdk::{eal, probe, DeviceStatus, DpdkConfig, DpdkPort};
use ferroplane_dataplane::port::Port;
use ferroplane_hugepages::Policy;
use ferroplane_pipeline::buf::{PacketBuf, HEADROOM};
use ferroplane_pipeline::pool::Pool;

const PCAP_FRAMES: usize = 100;

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("ferroplane-dpdk-ports-{}", std::process::id()))
}

fn frame(tag: u8, i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| tag ^ (i as u8).wrapping_mul(31) ^ (j as u8)).collect()
}

/// Starts EAL once for the process, with the devices of every test below.
fn eal() {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = STARTED.get_or_init(|| {
        let dir = scratch();
        std::fs::create_dir_all(&dir).unwrap();
        let mut w =
            ferroplane_dataplane::pcap::CaptureWriter::create(&dir.join("in.pcap")).unwrap();
        for i in 0..PCAP_FRAMES {
            w.write(i as u64 * 1000, &frame(0x5a, i, 60 + i * 7)).unwrap();
        }
        w.finish().unwrap();
        let devices = vec![
            "net_ring0".to_string(),
            "net_ring1".to_string(),
            "net_ring2".to_string(),
            "net_ring3".to_string(),
            "net_null0".to_string(),
            "net_null1".to_string(),
            format!(
                "net_pcap0,rx_pcap={},tx_pcap={}",
                dir.join("in.pcap").display(),
                dir.join("out.pcap").display()
            ),
            format!(
                "net_pcap1,rx_pcap={},tx_pcap={}",
                dir.join("in.pcap").display(),
                dir.join("out1.pcap").display()
            ),
        ];
        let (argv, warning) = eal::argv(None, &devices);
        if let Some(w) = warning {
            eprintln!("{w}");
        }
        eal::init(&argv)
    });
    if let Err(e) = r {
        panic!("DPDK is required by these tests and did not start: {e}");
    }
}

fn cfg(name: &str, interface: &str, queues: u16) -> DpdkConfig {
    DpdkConfig {
        name: name.into(),
        interface: interface.into(),
        queues,
        rx_desc: 256,
        tx_desc: 256,
        mtu: 1500,
        mac: None,
    }
}

fn pools(n: usize, frames: usize) -> Vec<Pool> {
    (0..n).map(|_| Pool::new(frames, Policy::PreferHuge).unwrap()).collect()
}

fn start(c: &DpdkConfig, pools: &mut [Pool]) -> (Vec<DpdkPort>, DeviceStatus) {
    let dev = probe(c).unwrap_or_else(|e| panic!("probe {}: {e}", c.interface));
    dev.start(pools).unwrap_or_else(|e| panic!("start {}: {e}", c.interface))
}

fn counter(s: &DeviceStatus, k: &str) -> u64 {
    let r = s.report();
    r.counters.iter().find(|(n, _)| n == k).map(|(_, v)| *v).unwrap_or_else(|| panic!("{k}"))
}

/// Receives until `want` frames came or 100 empty polls in a row.
fn receive(p: &mut DpdkPort, pool: &mut Pool, want: usize) -> Vec<PacketBuf> {
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < want && empty < 100 {
        if p.rx_burst(pool, &mut got, 64, 7) == 0 {
            empty += 1;
        }
    }
    got
}

#[test]
fn ring_queues_loop_frames_back_zero_copy_each_in_its_own_worker_pool() {
    eal();
    let c = cfg("ring", "net_ring0", 2);
    let mut pools = pools(2, 4096);
    let (mut ports, status) = start(&c, &mut pools);
    assert_eq!(ports.len(), 2);
    assert!(ports[0].mode_name().unwrap().contains("net_ring"), "{:?}", ports[0].mode_name());
    let home: Vec<usize> = pools.iter().map(|p| p.available()).collect();
    assert_eq!(home[0], 4096 - c.frames_per_queue(), "the mempools took their frames");
    let mempools: Vec<(u32, u32)> = ports.iter().map(|p| p.mempool_available()).collect();
    for round in 0..200 {
        for q in 0..2 {
            let (port, pool) = (&mut ports[q], &mut pools[q]);
            let mut burst = Vec::new();
            let mut sent_frames = Vec::new();
            for i in 0..64 {
                let mut b = pool.alloc().unwrap();
                b.fill_from(&frame(q as u8, i + round, 64 + i)).unwrap();
                // Encapsulation moves the head: cover heads below DPDK's own 128-byte headroom.
                if i % 3 == 1 {
                    b.prepend(200).unwrap().fill(0xee);
                }
                sent_frames.push((b.frame_ptr() as usize, b.head_offset(), b.data().to_vec()));
                burst.push(b);
            }
            assert_eq!(port.tx_burst(pool, &mut burst), 64, "queue {q} round {round}");
            assert!(burst.is_empty());
            let got = receive(port, pool, 64);
            assert_eq!(got.len(), 64, "queue {q} round {round}");
            for (b, (ptr, head, bytes)) in got.iter().zip(&sent_frames) {
                assert_eq!(b.data(), bytes.as_slice());
                // Zero copy: the very frame that was sent comes back, at the same offset.
                assert_eq!((b.frame_ptr() as usize, b.head_offset()), (*ptr, *head));
            }
            for b in got {
                pool.free(b);
            }
        }
        // Nothing crossed from one queue (worker) to the other.
        for q in 0..2 {
            let mut stray = Vec::new();
            assert_eq!(ports[q].rx_burst(&mut pools[q], &mut stray, 64, 0), 0);
        }
    }
    // No frame leaked: pools and mempools are back where they started.
    assert_eq!(pools.iter().map(|p| p.available()).collect::<Vec<_>>(), home);
    assert_eq!(ports.iter().map(|p| p.mempool_available()).collect::<Vec<_>>(), mempools);
    let r = status.report();
    assert!(r.link.starts_with("up"), "{r:?}");
    assert_eq!(counter(&status, "opackets"), 2 * 200 * 64);
    assert_eq!(counter(&status, "rx_copied"), 0);
    assert_eq!(counter(&status, "rx_too_big") + counter(&status, "rx_foreign"), 0);
}

#[test]
fn received_frames_start_at_the_pipeline_headroom() {
    eal();
    // A pcap device receives into mbufs the PMD allocates from the receive mempool: the bytes
    // must land at HEADROOM of a pool frame, with room for 256 bytes of outer headers.
    let c = cfg("pcap", "net_pcap0", 1);
    let mut pools = pools(1, 2048);
    let (mut ports, status) = start(&c, &mut pools);
    let got = receive(&mut ports[0], &mut pools[0], PCAP_FRAMES);
    assert_eq!(got.len(), PCAP_FRAMES);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(b.data(), frame(0x5a, i, 60 + i * 7).as_slice(), "frame {i}");
        assert_eq!(b.head_offset(), HEADROOM);
        assert_eq!(b.meta.timestamp_ns, 7);
    }
    let mut more = Vec::new();
    assert_eq!(ports[0].rx_burst(&mut pools[0], &mut more, 64, 0), 0, "a pcap ends");
    let mut burst = got;
    let mut sent = 0;
    // A pcap device takes every burst whole; a few rounds are plenty, a stuck one must fail.
    for _ in 0..16 {
        if burst.is_empty() {
            break;
        }
        sent += ports[0].tx_burst(&mut pools[0], &mut burst);
    }
    assert!(burst.is_empty(), "{} frame(s) still refused after 16 tries", burst.len());
    assert_eq!(sent, PCAP_FRAMES);
    assert_eq!(counter(&status, "ipackets"), PCAP_FRAMES as u64);
    drop(ports); // closes the device: the pcap PMD flushes its file
    let out = ferroplane_dataplane::pcap::read_capture(&scratch().join("out.pcap")).unwrap();
    assert_eq!(out.len(), PCAP_FRAMES);
    for (i, f) in out.iter().enumerate() {
        assert_eq!(f.data, frame(0x5a, i, 60 + i * 7), "written frame {i}");
    }
    assert_eq!(status.report().link, "closed");
    // The device is closed: its capture files can go.
    let _ = std::fs::remove_dir_all(scratch());
}

/// A packet received into an mbuf of the receive mempool and forwarded before the port's next
/// receive leaves in that very mbuf (no carrier, no re-arm), on another device too; one whose
/// head moved in front of the mbuf's buffer gets a carrier; the next receive takes back, with
/// spare frames, the mbufs nobody sent. Afterwards every mempool and the pool are whole.
#[test]
fn forwarded_packets_leave_in_the_mbuf_they_came_in_and_the_rest_go_back() {
    eal();
    let mut pools = pools(1, 4096);
    let (mut src, status) = start(&cfg("pcap1", "net_pcap1", 1), &mut pools);
    let (mut dst, _) = start(&cfg("null1", "net_null1", 1), &mut pools);
    let (a, b, pool) = (&mut src[0], &mut dst[0], &mut pools[0]);
    let (rx_home, a_tx_home) = a.mempool_available();
    let b_home = b.mempool_available();
    let home = pool.available() + a.stashed_frames();
    let mut got = Vec::new();
    assert_eq!(a.rx_burst(pool, &mut got, 64, 0), 64);
    assert_eq!(a.mempool_available().0, rx_home - 64, "parked with their frames");
    // Forward 32, the first with 200 bytes of outer headers in front (past the mbuf's buffer
    // start, so it needs a carrier); drop the other 32.
    let dropped = got.split_off(32);
    got[0].prepend(200).unwrap();
    assert_eq!(b.tx_burst(pool, &mut got), 32);
    // net_null frees what it sends, into each mbuf's own mempool: 31 receive mbufs went home
    // with their frames, and the carrier to its transmit mempool.
    assert_eq!(a.mempool_available().0, rx_home - 33);
    assert_eq!(b.mempool_available(), b_home);
    for d in dropped {
        pool.free(d);
    }
    // The next poll's reclaim takes back the 33 nobody sent, each with a spare frame.
    a.reclaim(pool);
    assert_eq!(a.mempool_available().0, rx_home);
    let mut more = Vec::new();
    assert_eq!(a.rx_burst(pool, &mut more, 64, 0), 36, "the rest of the capture");
    assert_eq!(a.mempool_available().0, rx_home - 36);
    assert_eq!(b.tx_burst(pool, &mut more), 36);
    assert_eq!(a.rx_burst(pool, &mut more, 64, 0), 0, "a pcap ends");
    assert_eq!(a.mempool_available(), (rx_home, a_tx_home));
    assert_eq!(b.mempool_available(), b_home);
    assert_eq!(pool.available() + a.stashed_frames(), home, "no frame lost or gained");
    assert_eq!(counter(&status, "rx_copied") + counter(&status, "rx_no_buffer"), 0);
}

#[test]
fn empty_pools_and_full_rings_are_counted_never_fatal() {
    eal();
    let c = cfg("ring1", "net_ring1", 1);
    let mut pools = pools(1, 2048);
    let (mut ports, status) = start(&c, &mut pools);
    let (port, pool) = (&mut ports[0], &mut pools[0]);
    // Frames outside the mempools: the pool's, the stash's and those in the test's hands.
    let total = 2048 - c.frames_per_queue();
    // Six bursts around the loop: each carrier's old frame goes to the stash (256 at most),
    // the rest back to the pool.
    for k in 0..6 {
        let mut burst: Vec<PacketBuf> = (0..64)
            .map(|i| {
                let mut b = pool.alloc().unwrap();
                b.fill_from(&frame(9, k * 64 + i, 80)).unwrap();
                b
            })
            .collect();
        assert_eq!(port.tx_burst(pool, &mut burst), 64, "burst {k}");
    }
    assert_eq!(port.stashed_frames(), 256);
    assert_eq!(pool.available() + port.stashed_frames(), total);
    // The worker's pool runs dry: the first 256 received frames are exchanged with the stash,
    // the next 128 cannot be and are dropped, counted.
    let mut hoard = Vec::new();
    while let Some(b) = pool.alloc() {
        hoard.push(b);
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        port.rx_burst(pool, &mut got, 64, 0);
    }
    assert_eq!(got.len(), 256);
    assert_eq!(counter(&status, "rx_no_buffer"), 128);
    assert_eq!(port.stashed_frames(), 0);
    hoard.extend(got);
    // Transmit until the ring or the carriers run out: refused frames stay with the caller.
    let mut offered = 0;
    let mut accepted = 0;
    for _ in 0..40 {
        let mut burst: Vec<PacketBuf> = hoard.drain(..64.min(hoard.len())).collect();
        for b in &mut burst {
            b.fill_from(&[1; 60]).unwrap();
        }
        offered += burst.len();
        accepted += port.tx_burst(pool, &mut burst);
        hoard.extend(burst);
        if hoard.is_empty() {
            break;
        }
    }
    let refused = counter(&status, "tx_ring_full") + counter(&status, "tx_no_mbuf");
    assert!(refused > 0, "the ring or the {} carriers must run out", c.frames_per_queue());
    assert!(accepted < offered);
    // Each accepted frame went to the device and its carrier's old frame came back (stash or
    // pool); the refused ones are still in `hoard`: nothing is lost.
    assert_eq!(pool.available() + port.stashed_frames() + hoard.len(), total);
}

#[test]
fn transmit_refuses_another_pool_and_counts_each_frame() {
    eal();
    let c = cfg("ring2", "net_ring2", 1);
    let mut pools = pools(2, 2048);
    let (mut ports, status) = start(&c, &mut pools[..1]);
    let [mine, other] = &mut pools[..] else { unreachable!() };
    let port = &mut ports[0];
    let (home, other_home) = (mine.available(), other.available());
    let fill = |pool: &mut Pool, n: usize| -> Vec<PacketBuf> {
        (0..n)
            .map(|i| {
                let mut b = pool.alloc().unwrap();
                b.fill_from(&frame(7, i, 70)).unwrap();
                b
            })
            .collect()
    };
    // The queue's own frames, but the carriers' old frames would go to another pool: refused.
    let mut burst = fill(mine, 10);
    assert_eq!(port.tx_burst(other, &mut burst), 0);
    assert_eq!(burst.len(), 10);
    assert_eq!(counter(&status, "tx_foreign"), 10);
    // A frame of another pool third in the burst: the two before it go, the 8 from it on stay.
    burst.insert(2, other.alloc().unwrap());
    let last = burst.pop().unwrap();
    mine.free(last);
    assert_eq!(port.tx_burst(mine, &mut burst), 2);
    assert_eq!(burst.len(), 8);
    assert_eq!(counter(&status, "tx_foreign"), 18);
    let got = receive(port, mine, 2);
    assert_eq!(got.len(), 2);
    // Every frame is accounted for: nothing of either pool was lost or moved across.
    let foreign = burst.remove(0);
    other.free(foreign);
    assert_eq!(other.available(), other_home);
    for b in burst.into_iter().chain(got) {
        mine.free(b);
    }
    assert_eq!(mine.available() + port.stashed_frames(), home);
}

#[test]
fn the_mac_reported_is_the_one_the_device_has() {
    eal();
    let want = [0x02, 0xfe, 0x00, 0x00, 0x00, 0x42];
    // net_null takes a MAC.
    let mut c = cfg("null", "net_null0", 1);
    c.mac = Some(want);
    let dev = probe(&c).unwrap();
    assert_eq!(dev.mac(), want);
    assert!(!dev.promiscuous());
    // net_ring cannot: the port reports the device's own MAC (what neighbours must resolve to)
    // and receives promiscuously, so frames to the configured MAC are not filtered.
    let own = probe(&cfg("ring3", "net_ring3", 1)).unwrap().mac();
    let mut c = cfg("ring3", "net_ring3", 1);
    c.mac = Some(want);
    let dev = probe(&c).unwrap();
    assert_ne!(own, want);
    assert_eq!(dev.mac(), own);
    assert!(dev.promiscuous());
}
