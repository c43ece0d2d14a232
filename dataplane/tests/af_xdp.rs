//! The AF_XDP port against the real kernel: two sockets on the two ends of a veth pair in a
//! namespace this test creates, a million frames from one to the other, and then every UMEM frame
//! of both ports accounted for. Needs root (CI is root); fails loudly otherwise.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use ferroplane_dataplane::port::af_xdp::{AfXdpConfig, AfXdpPort, AttachMode, BindMode};
use ferroplane_dataplane::port::Port;
use ferroplane_hugepages::Policy;
use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::pool::Pool;

const FRAMES: u64 = 1_000_000;

/// A namespace holding a veth pair `xa` <-> `xb`, removed on drop (even when the test fails).
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip").args(args).output().expect("run ip (install iproute2)");
    assert!(o.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

impl Netns {
    fn new(tag: &str) -> Netns {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root (AF_XDP, namespaces)");
        let name = format!("fpx{}{tag}", std::process::id());
        let ns = Netns { name };
        ip(&["netns", "add", &ns.name]);
        let n = &ns.name;
        ip(&["-n", n, "link", "add", "xa", "type", "veth", "peer", "name", "xb"]);
        for i in ["xa", "xb"] {
            ip(&["-n", n, "link", "set", i, "up"]);
            // No IPv6 autoconf chatter: only our frames cross the pair.
            let _ = Command::new("ip")
                .args(["netns", "exec", n, "sysctl", "-qw"])
                .arg(format!("net.ipv6.conf.{i}.disable_ipv6=1"))
                .output();
        }
        ns
    }

    /// Moves the calling thread into the namespace (sockets are opened from this thread).
    fn enter(&self) {
        let f = File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        // SAFETY: a valid namespace fd; affects only this thread.
        let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

fn frame(seq: u64) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xbb]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xaa]);
    // A local experimental ethertype: the kernel passes it up to nobody.
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    f
}

fn open(ifname: &str) -> AfXdpPort {
    let mut cfg = AfXdpConfig::new(ifname, 0);
    cfg.bind = BindMode::Auto;
    cfg.attach = AttachMode::Auto;
    AfXdpPort::open(ifname, &cfg).unwrap_or_else(|e| panic!("open {ifname}: {e}"))
}

#[test]
fn a_million_frames_cross_a_veth_and_no_umem_frame_leaks() {
    let ns = Netns::new("m");
    ns.enter();
    let mut a = open("xa");
    let mut b = open("xb");
    // veth has no zero-copy mode (MACHINE-NOTES): auto must have fallen back to copy.
    assert!(a.mode_name().unwrap().starts_with("copy/"), "{:?}", a.mode_name());
    let start_a = a.frames();
    let start_b = b.frames();
    assert!(start_a.balanced() && start_b.balanced(), "{start_a:?} {start_b:?}");

    let mut pool = Pool::new(4096, Policy::PreferHuge).unwrap();
    let pool_size = pool.available();
    let mut out: Vec<PacketBuf> = Vec::with_capacity(64);
    let mut got: Vec<PacketBuf> = Vec::with_capacity(64);
    let (mut sent, mut received, mut in_order) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < FRAMES && Instant::now() < deadline {
        // Keep at most 1024 frames between the sockets so neither ring overflows.
        while sent < FRAMES && sent - received < 1024 && out.len() < 64 {
            let mut buf = pool.alloc().expect("pool has room");
            buf.fill_from(&frame(sent)).unwrap();
            out.push(buf);
            sent += 1;
        }
        // What the ring refuses stays in `out`, in order, and goes next round.
        a.tx_burst(&mut pool, &mut out);
        a.reclaim(&mut pool);
        b.rx_burst(&mut pool, &mut got, 64, 0);
        for buf in got.drain(..) {
            let seq = u64::from_be_bytes(buf.data()[14..22].try_into().unwrap());
            if seq == received {
                in_order += 1;
            }
            received += 1;
            pool.free(buf);
        }
    }
    for buf in out.drain(..) {
        pool.free(buf);
    }
    // Let the last completions come back.
    let settle = Instant::now() + Duration::from_secs(5);
    while a.frames().tx_in_flight > 0 && Instant::now() < settle {
        a.reclaim(&mut pool);
        std::thread::sleep(Duration::from_millis(1));
    }

    let stats = b.xsk_stats().expect("XDP_STATISTICS");
    assert_eq!(received, FRAMES, "sent {sent}, kernel counters on the receiver: {stats:?}");
    assert_eq!(in_order, FRAMES, "veth keeps order on one queue");
    assert_eq!(a.tx_no_frame, 0);
    assert_eq!(b.rx_no_buffer, 0);
    for (name, now, start) in [("xa", a.frames(), start_a), ("xb", b.frames(), start_b)] {
        assert!(now.balanced(), "{name}: {now:?}");
        assert_eq!(now.tx_in_flight, 0, "{name}: completions outstanding: {now:?}");
        assert_eq!(now.tx_free, start.tx_free, "{name}: tx frames lost: {now:?}");
        assert_eq!(now.fill + now.rx_spare, start.fill + start.rx_spare, "{name}: {now:?}");
    }
    assert_eq!(pool.available(), pool_size, "every pool buffer came home");
}

#[test]
fn closing_the_last_port_removes_the_xdp_program() {
    let ns = Netns::new("d");
    ns.enter();
    let shows_xdp = || {
        let o = Command::new("ip").args(["link", "show", "dev", "xa"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).contains("xdp")
    };
    let p = open("xa");
    assert!(shows_xdp(), "a program is attached while the port is open");
    drop(p);
    assert!(!shows_xdp(), "no program left once the port closed");
    // And the queue can be bound again at once (retrying EBUSY if the kernel is slow).
    let again = open("xa");
    assert!(again.mode_name().is_some());
}

#[test]
fn bad_requests_are_clear_errors() {
    let ns = Netns::new("e");
    ns.enter();
    let mut cfg = AfXdpConfig::new("xa", 0);
    cfg.bind = BindMode::ZeroCopy;
    let e = AfXdpPort::open("xa", &cfg).err().expect("veth has no zero-copy");
    assert!(e.contains("zerocopy") && e.contains("`xa`"), "{e}");
    let e = AfXdpPort::open("p", &AfXdpConfig::new("xa", 7)).err().expect("no queue 7");
    assert!(e.contains("queue 7"), "{e}");
}
