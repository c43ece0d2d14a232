//! The AF_XDP port (via `xsk-rs`, which drives libxdp).
//!
//! One port is one (interface, queue) socket with its own UMEM, so each worker owns its rings
//! outright and nothing is shared across cores. libxdp loads its default redirect program (a
//! `bpf_redirect_map` into the XSKMAP, keyed by queue) on the first socket of an interface and
//! adds later queues to it; the last port of an interface to close makes sure the program is gone.
//!
//! UMEM frames are split in two fixed halves: receive frames cycle between the fill ring and the
//! rx ring, transmit frames between a free list and the tx/completion rings. Received bytes are
//! copied into the worker's pool buffers and transmitted bytes back into UMEM frames. On veth (copy
//! mode only, see MACHINE-NOTES) the kernel copies each frame anyway, and one copy of a frame that
//! is already in L1 costs a few ns beside the ~1 µs per frame the kernel spends; sharing the pool
//! with the UMEM (true zero copy, for zero-copy NICs) is the change that would remove it, and the
//! port trait already lets a port hand its own buffers to the pipeline.
//!
//! Frame accounting is exact: every UMEM frame is at any time in exactly one of the fill ring (or
//! the kernel's rx path), the free list, or the tx/completion rings, and [`AfXdpPort::frames`]
//! reports the split so a test can prove none leaks.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferroplane_pipeline::buf::PacketBuf;
use ferroplane_pipeline::pool::Pool;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::Port;

/// How the socket binds to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy, falling back to copy where the driver lacks it (veth always does).
    Auto,
    ZeroCopy,
    Copy,
}

/// How the XDP program attaches to the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (skb) mode.
    Auto,
    Native,
    Generic,
}

impl BindMode {
    pub fn parse(s: &str) -> Option<BindMode> {
        match s {
            "auto" => Some(BindMode::Auto),
            "zerocopy" | "zero-copy" => Some(BindMode::ZeroCopy),
            "copy" => Some(BindMode::Copy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BindMode::Auto => "auto",
            BindMode::ZeroCopy => "zerocopy",
            BindMode::Copy => "copy",
        }
    }
}

impl AttachMode {
    pub fn parse(s: &str) -> Option<AttachMode> {
        match s {
            "auto" => Some(AttachMode::Auto),
            "native" | "driver" => Some(AttachMode::Native),
            "generic" | "skb" => Some(AttachMode::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Auto => "auto",
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        }
    }
}

/// The (attach, bind) pairs `open` tries, in order: the fastest first.
pub fn attempts(attach: AttachMode, bind: BindMode) -> Vec<(AttachMode, BindMode)> {
    let attaches: &[AttachMode] = match attach {
        AttachMode::Auto => &[AttachMode::Native, AttachMode::Generic],
        AttachMode::Native => &[AttachMode::Native],
        AttachMode::Generic => &[AttachMode::Generic],
    };
    let binds: &[BindMode] = match bind {
        BindMode::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
        BindMode::ZeroCopy => &[BindMode::ZeroCopy],
        BindMode::Copy => &[BindMode::Copy],
    };
    attaches.iter().flat_map(|&a| binds.iter().map(move |&b| (a, b))).collect()
}

/// What to open.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    pub interface: String,
    pub queue: u16,
    pub bind: BindMode,
    pub attach: AttachMode,
    /// UMEM frames; half receive, half transmit.
    pub frames: u32,
    /// Size of each of the four rings.
    pub ring: u32,
    /// How long to keep retrying a bind that answers EBUSY (a socket of a process that just
    /// exited is still being torn down).
    pub busy_retry: Duration,
}

impl AfXdpConfig {
    pub fn new(interface: &str, queue: u16) -> AfXdpConfig {
        AfXdpConfig {
            interface: interface.to_string(),
            queue,
            bind: BindMode::Auto,
            attach: AttachMode::Auto,
            frames: 4096,
            ring: 2048,
            busy_retry: Duration::from_secs(5),
        }
    }
}

/// Where every UMEM frame of a port is, for leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAccount {
    pub total: u32,
    /// Posted to the fill ring (the kernel holds them until a frame arrives).
    pub fill: u32,
    /// Received but not yet posted back (the fill ring was full).
    pub rx_spare: u32,
    /// Transmit frames ready for use.
    pub tx_free: u32,
    /// Handed to the tx ring and not yet back from the completion ring.
    pub tx_in_flight: u32,
}

impl FrameAccount {
    /// Every frame is somewhere.
    pub fn balanced(&self) -> bool {
        self.fill + self.rx_spare + self.tx_free + self.tx_in_flight == self.total
    }
}

/// Kernel-side counters of the socket (XDP_STATISTICS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid: u64,
    pub tx_invalid: u64,
    pub rx_ring_full: u64,
    pub fill_ring_empty: u64,
    pub tx_ring_empty: u64,
}

/// Interfaces this process attached a program to, with how many of its ports use each, so the
/// last one to close can remove the program if libxdp left it behind.
static ATTACHED: Mutex<Option<HashMap<u32, (u32, u32)>>> = Mutex::new(None);

/// The socket's rings and its UMEM. Field order is drop order: the queues hold the socket, which
/// must close before the UMEM is unmapped.
struct Rings {
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    umem: Umem,
}

pub struct AfXdpPort {
    name: String,
    interface: String,
    ifindex: u32,
    mode: String,
    /// Dropped by hand in `Drop`, so the program check runs after the socket is gone.
    rings: ManuallyDrop<Rings>,
    /// Scratch for ring transfers (BURST descriptors), preallocated.
    descs: Vec<FrameDesc>,
    rx_spare: Vec<FrameDesc>,
    tx_free: Vec<FrameDesc>,
    tx_in_flight: u32,
    fill: u32,
    total: u32,
    /// Transmit frames refused because every tx frame was in flight.
    pub tx_no_frame: u64,
    /// Received frames dropped because the worker's pool was empty or the frame too large.
    pub rx_no_buffer: u64,
}

const BURST: usize = 64;

/// `XDP_FLAGS_SKB_MODE` and `XDP_FLAGS_DRV_MODE` of linux/if_link.h, for netlink queries.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        cur = err.source();
    }
    None
}

fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        s.push_str(": ");
        s.push_str(&err.to_string());
        cur = err.source();
    }
    s
}

fn ifindex(name: &str) -> Result<u32, String> {
    let c = CString::new(name).map_err(|_| format!("bad interface name `{name}`"))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(format!("no interface `{name}` in this network namespace"))
    } else {
        Ok(i)
    }
}

/// The id of the XDP program attached to `ifindex` in `mode` (XDP_FLAGS_*), if any.
fn attached_prog(ifindex: u32, mode: u32) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: plain query; `id` outlives the call.
    let r = unsafe { libxdp_sys::bpf_xdp_query_id(ifindex as i32, mode as i32, &mut id) };
    (r == 0 && id != 0).then_some(id)
}

extern "C" {
    fn vsnprintf(
        buf: *mut libc::c_char,
        n: usize,
        fmt: *const libc::c_char,
        ap: *mut libxdp_sys::__va_list_tag,
    ) -> libc::c_int;
    /// libbpf's (bundled and linked by libxdp-sys, which does not bind this one).
    fn libbpf_set_print(fn_: Option<LibbpfPrint>) -> Option<LibbpfPrint>;
}

type LibbpfPrint = unsafe extern "C" fn(
    libc::c_uint,
    *const libc::c_char,
    *mut libxdp_sys::__va_list_tag,
) -> libc::c_int;

/// libxdp's messages ("no bpffs, falling back to a single program" and the like) go to tracing
/// at debug level instead of straight to stderr: `open` reports what matters itself.
unsafe extern "C" fn libxdp_log(
    _level: libxdp_sys::libxdp_print_level,
    fmt: *const libc::c_char,
    ap: *mut libxdp_sys::__va_list_tag,
) -> libc::c_int {
    let mut buf = [0 as libc::c_char; 512];
    // SAFETY: libxdp passes a format and its matching va_list; `buf` bounds the output.
    let n = unsafe { vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, ap) };
    if n > 0 {
        // SAFETY: vsnprintf NUL-terminates within `buf`.
        let msg = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        tracing::debug!(target: "libxdp", "{}", msg.to_string_lossy().trim_end());
    }
    0
}

/// Once per process: libxdp's messages into tracing, and the locked-memory limit lifted (kernels
/// before 5.11 charge UMEM and BPF maps to RLIMIT_MEMLOCK, whose default of 8 MiB is too small).
fn process_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: installs callbacks with the signature libxdp and libbpf expect.
        unsafe {
            libxdp_sys::libxdp_set_print(Some(libxdp_log));
            libbpf_set_print(Some(libxdp_log));
        }
        let inf = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        // SAFETY: plain syscall with a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &inf) } != 0 {
            tracing::debug!("could not lift RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
        }
    });
}

/// A hint for the errors whose fix is not obvious from errno alone.
fn hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::ENOMEM) => {
            " (too little locked memory: raise it with `ulimit -l unlimited`, or lower `frames`)"
        }
        Some(libc::EINVAL) => " (no such queue on this interface? see `ethtool -l`)",
        Some(libc::EOPNOTSUPP) => " (the driver does not support this mode)",
        Some(libc::EPERM) | Some(libc::EACCES) => " (AF_XDP needs root)",
        _ => "",
    }
}

impl AfXdpPort {
    /// Opens the socket, trying attach and bind modes in [`attempts`] order and retrying EBUSY
    /// with backoff. Errors name the interface, the mode and the kernel's answer.
    pub fn open(name: &str, cfg: &AfXdpConfig) -> Result<AfXdpPort, String> {
        process_setup();
        let ifindex = ifindex(&cfg.interface)?;
        let frames =
            NonZeroU32::new(cfg.frames.max(2 * BURST as u32)).ok_or("frames must be positive")?;
        let ring = QueueSize::new(cfg.ring).map_err(|e| format!("ring size {}: {e}", cfg.ring))?;
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(2048).map_err(|e| e.to_string())?)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| e.to_string())?;
        let iface: Interface =
            cfg.interface.parse().map_err(|_| format!("bad interface name `{}`", cfg.interface))?;

        let mut last_err = String::new();
        for (attach, bind) in attempts(cfg.attach, cfg.bind) {
            let deadline = Instant::now() + cfg.busy_retry;
            let mut backoff = Duration::from_millis(50);
            loop {
                let (umem, descs, huge) = new_umem(umem_cfg, frames)?;
                let xdp_flags = match attach {
                    AttachMode::Native => XdpFlags::XDP_FLAGS_DRV_MODE,
                    _ => XdpFlags::XDP_FLAGS_SKB_MODE,
                };
                let bind_flags = BindFlags::XDP_USE_NEED_WAKEUP
                    | match bind {
                        BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
                        _ => BindFlags::XDP_COPY,
                    };
                let sock_cfg = SocketConfig::builder()
                    .rx_queue_size(ring)
                    .tx_queue_size(ring)
                    .xdp_flags(xdp_flags)
                    .bind_flags(bind_flags)
                    .libxdp_flags(LibxdpFlags::empty())
                    .build();
                // SAFETY: the UMEM is new and not shared, so libxdp loads (or reuses) the
                // program itself; no other socket uses this UMEM.
                match unsafe { xsk_rs::Socket::new(sock_cfg, &umem, &iface, cfg.queue as u32) } {
                    Ok((tx, rx, Some((fq, cq)))) => {
                        let mode = format!(
                            "{}/{}{}",
                            bind.as_str(),
                            attach.as_str(),
                            if huge { "" } else { " (umem on 4k pages)" }
                        );
                        tracing::info!(
                            port = name,
                            interface = cfg.interface,
                            queue = cfg.queue,
                            mode,
                            "AF_XDP socket bound"
                        );
                        let mut port = AfXdpPort::from_parts(
                            name,
                            cfg,
                            ifindex,
                            mode,
                            (tx, rx, fq, cq),
                            umem,
                            descs,
                        );
                        port.register(attach);
                        return Ok(port);
                    }
                    Ok((_, _, None)) => {
                        return Err("libxdp handed no fill/completion rings for a new UMEM".into())
                    }
                    Err(e) => {
                        let errno = errno_of(&e);
                        last_err = format!(
                            "{} {} bind on `{}` queue {}: {}{}",
                            attach.as_str(),
                            bind.as_str(),
                            cfg.interface,
                            cfg.queue,
                            describe(&e),
                            hint(errno)
                        );
                        if errno == Some(libc::EBUSY) && Instant::now() < deadline {
                            tracing::warn!(
                                port = name,
                                interface = cfg.interface,
                                queue = cfg.queue,
                                "queue busy (EBUSY; a socket of an earlier process may still be \
                                 closing): retrying in {} ms",
                                backoff.as_millis()
                            );
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_millis(800));
                            continue;
                        }
                        if matches!(errno, Some(libc::EPERM | libc::EACCES | libc::ENOMEM)) {
                            return Err(last_err);
                        }
                        tracing::info!(port = name, "{last_err}; trying the next mode");
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    fn from_parts(
        name: &str,
        cfg: &AfXdpConfig,
        ifindex: u32,
        mode: String,
        (tx, rx, mut fq, cq): (TxQueue, RxQueue, FillQueue, CompQueue),
        umem: Umem,
        mut descs: Vec<FrameDesc>,
    ) -> AfXdpPort {
        let total = descs.len() as u32;
        let tx_free = descs.split_off(descs.len() / 2);
        let mut rx_spare = descs;
        // The rings take at most `ring` entries; what does not fit waits as spare.
        // SAFETY: the frames are this UMEM's and owned by nobody else yet.
        let posted = unsafe { fq.produce(&rx_spare) };
        rx_spare.drain(..posted);
        AfXdpPort {
            name: name.to_string(),
            interface: cfg.interface.clone(),
            ifindex,
            mode,
            rings: ManuallyDrop::new(Rings { tx, rx, fq, cq, umem }),
            descs: vec![FrameDesc::default(); BURST],
            rx_spare,
            tx_in_flight: 0,
            fill: posted as u32,
            total,
            tx_free,
            tx_no_frame: 0,
            rx_no_buffer: 0,
        }
    }

    fn register(&mut self, attach: AttachMode) {
        let flag = match attach {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            _ => XDP_FLAGS_SKB_MODE,
        };
        let mut g = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
        let e = g.get_or_insert_with(HashMap::new).entry(self.ifindex).or_insert((0, flag));
        e.0 += 1;
    }

    /// Where every UMEM frame is.
    pub fn frames(&self) -> FrameAccount {
        FrameAccount {
            total: self.total,
            fill: self.fill,
            rx_spare: self.rx_spare.len() as u32,
            tx_free: self.tx_free.len() as u32,
            tx_in_flight: self.tx_in_flight,
        }
    }

    /// The kernel's counters for this socket.
    pub fn xsk_stats(&self) -> std::io::Result<XskStats> {
        let s = self.rings.rx.fd().xdp_statistics()?;
        Ok(XskStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid: s.rx_invalid_descs(),
            tx_invalid: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            fill_ring_empty: s.rx_fill_ring_empty_descs(),
            tx_ring_empty: s.tx_ring_empty_descs(),
        })
    }

    /// Posts spare receive frames to the fill ring, waking the kernel if it asked to be.
    fn refill(&mut self) {
        if self.rx_spare.is_empty() {
            return;
        }
        // SAFETY: spare frames are this UMEM's and no longer read by us.
        let n = unsafe { self.rings.fq.produce(&self.rx_spare) };
        let keep = self.rx_spare.len() - n;
        // Move the unposted tail to the front without allocating.
        self.rx_spare.drain(..n);
        debug_assert_eq!(self.rx_spare.len(), keep);
        self.fill += n as u32;
        if n > 0 && self.rings.fq.needs_wakeup() {
            // A zero-timeout poll is the documented fill-ring wakeup.
            let r = &mut *self.rings;
            let _ = r.fq.wakeup(r.rx.fd_mut(), 0);
        }
    }
}

fn new_umem(cfg: UmemConfig, frames: NonZeroU32) -> Result<(Umem, Vec<FrameDesc>, bool), String> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    match Umem::new(cfg, frames, true) {
        Ok((u, d)) => Ok((u, d, true)),
        Err(huge_err) => {
            let (u, d) = Umem::new(cfg, frames, false)
                .map_err(|e| format!("cannot create UMEM: {}", describe(&e)))?;
            WARNED.call_once(|| {
                tracing::warn!(
                    "UMEM on 4 KiB pages: no 2 MiB huge pages ({}); reserve some with \
                     `echo 256 > /proc/sys/vm/nr_hugepages`",
                    describe(&huge_err)
                )
            });
            Ok((u, d, false))
        }
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_burst(
        &mut self,
        pool: &mut Pool,
        out: &mut Vec<PacketBuf>,
        max: usize,
        now_ns: u64,
    ) -> usize {
        let max = max.min(BURST);
        // SAFETY: `descs` is scratch space; the frames named come from this UMEM's rx ring.
        let n = unsafe { self.rings.rx.consume(&mut self.descs[..max]) };
        self.fill -= n as u32;
        let mut got = 0;
        for i in 0..n {
            let d = self.descs[i];
            // SAFETY: the kernel handed this frame to us; nothing writes it until we post it.
            let data = unsafe { self.rings.umem.data(&d) };
            match pool.alloc() {
                Some(mut b) => {
                    if b.fill_from(data.contents()).is_ok() {
                        b.meta.timestamp_ns = now_ns;
                        out.push(b);
                        got += 1;
                    } else {
                        pool.free(b);
                        self.rx_no_buffer += 1;
                    }
                }
                None => self.rx_no_buffer += 1,
            }
            self.rx_spare.push(d);
        }
        self.refill();
        if n == 0 && self.rings.fq.needs_wakeup() {
            let r = &mut *self.rings;
            let _ = r.fq.wakeup(r.rx.fd_mut(), 0);
        }
        got
    }

    fn tx_burst(&mut self, pool: &mut Pool, pkts: &mut Vec<PacketBuf>) -> usize {
        self.reclaim(pool);
        let want = pkts.len().min(self.tx_free.len()).min(BURST);
        let n = (self.rings.tx.nb_free(want as u32) as usize).min(want);
        let start = self.tx_free.len() - n;
        for (i, b) in pkts.drain(..n).enumerate() {
            let d = &mut self.tx_free[start + i];
            // SAFETY: free tx frames are ours alone until produced to the tx ring.
            let mut data = unsafe { self.rings.umem.data_mut(d) };
            let mut c = data.cursor();
            c.set_pos(0);
            // Buffers are at most FRAME_SIZE - HEADROOM and the UMEM frame is 2048 bytes.
            let _ = c.write_all(b.data());
            pool.free(b);
        }
        // SAFETY: these frames were filled above and are handed to the kernel now.
        let sent = unsafe { self.rings.tx.produce(&self.tx_free[start..]) };
        // `n` was capped by the ring's free entries, so it took them all; if it ever did not,
        // the frames it left are simply free again (their buffers were freed and counted).
        self.tx_free.drain(start..start + sent);
        self.tx_in_flight += sent as u32;
        self.tx_no_frame += (n - sent) as u64;
        if sent > 0 {
            // Copy mode always needs the kick (MACHINE-NOTES); zero-copy only when asked.
            if self.rings.tx.needs_wakeup() || self.mode.starts_with("copy") {
                let _ = self.rings.tx.wakeup();
            }
        }
        sent
    }

    fn reclaim(&mut self, _pool: &mut Pool) {
        if self.tx_in_flight == 0 {
            return;
        }
        // SAFETY: scratch descriptors; completed frames come back to the free list.
        let n = unsafe { self.rings.cq.consume(&mut self.descs) };
        self.tx_free.extend_from_slice(&self.descs[..n]);
        self.tx_in_flight -= n as u32;
        // In copy mode the kernel sends only from inside sendto(), and a limited batch per call
        // (32 in xsk_generic_xmit): frames still in the ring with nothing completed need another
        // kick, or the tail of a burst waits for the next burst (seen as loss by a generator
        // that stops, and as latency spikes by everyone). One syscall per poll while frames are
        // in flight, never per packet.
        if n == 0 && (self.rings.tx.needs_wakeup() || self.mode.starts_with("copy")) {
            let _ = self.rings.tx.wakeup();
        }
    }

    fn wait_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.rings.rx.fd().as_raw_fd())
    }

    fn mode_name(&self) -> Option<String> {
        Some(self.mode.clone())
    }
}

impl Drop for AfXdpPort {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here; nothing uses the rings afterwards.
        unsafe { ManuallyDrop::drop(&mut self.rings) };
        let mut g = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
        let Some(map) = g.as_mut() else { return };
        let Some(e) = map.get_mut(&self.ifindex) else { return };
        e.0 -= 1;
        if e.0 > 0 {
            return;
        }
        let flag = e.1;
        map.remove(&self.ifindex);
        drop(g);
        // libxdp removes its program when the interface's last socket closes; make sure, so
        // that no program of ours outlives the process's use of the interface.
        if attached_prog(self.ifindex, flag).is_some() {
            // SAFETY: plain netlink request for an interface this process attached to.
            let r =
                unsafe { libxdp_sys::bpf_xdp_detach(self.ifindex as i32, flag, std::ptr::null()) };
            if r == 0 {
                tracing::info!(interface = self.interface, "removed the XDP program");
            } else {
                tracing::warn!(
                    interface = self.interface,
                    "could not remove the XDP program: {}",
                    std::io::Error::from_raw_os_error(-r)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_fastest_first() {
        assert_eq!(
            attempts(AttachMode::Auto, BindMode::Auto),
            vec![
                (AttachMode::Native, BindMode::ZeroCopy),
                (AttachMode::Native, BindMode::Copy),
                (AttachMode::Generic, BindMode::ZeroCopy),
                (AttachMode::Generic, BindMode::Copy),
            ]
        );
        assert_eq!(
            attempts(AttachMode::Generic, BindMode::Copy),
            vec![(AttachMode::Generic, BindMode::Copy)]
        );
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [BindMode::Auto, BindMode::ZeroCopy, BindMode::Copy] {
            assert_eq!(BindMode::parse(m.as_str()), Some(m));
        }
        for m in [AttachMode::Auto, AttachMode::Native, AttachMode::Generic] {
            assert_eq!(AttachMode::parse(m.as_str()), Some(m));
        }
        assert_eq!(BindMode::parse("fast"), None);
    }

    #[test]
    fn missing_interface_is_a_clear_error() {
        let e = AfXdpPort::open("p", &AfXdpConfig::new("fp-no-such-if0", 0)).err().unwrap();
        assert!(e.contains("no interface `fp-no-such-if0`"), "{e}");
    }
}
