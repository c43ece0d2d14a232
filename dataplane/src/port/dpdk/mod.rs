//! DPDK ports (cargo feature `dpdk`): one [`DpdkDevice`] per configured port, one [`DpdkPort`]
//! per (device, queue), owned by the worker that serves that queue.
//!
//! # Zero copy: mbuf headers carry pool frames
//!
//! The pipeline works on [`PacketBuf`]s, frames of the worker's [`Pool`]; DPDK works on mbufs
//! from mempools. Each queue gets two mempools created with `rte_pktmbuf_pool_create_extbuf`
//! over frames taken from the worker's pool (pinned external buffers: DPDK never detaches them,
//! so an mbuf's `buf_addr` stays wherever ferroplane sets it). The mbuf *headers* live in DPDK's
//! memory; their data buffers ARE pool frames, and frames change hands between mbufs and
//! `PacketBuf`s without a byte being copied:
//!
//! - receive: the device fills an mbuf whose buffer is frame F (`buf_addr = F + 128`, so the data
//!   starts at `F + 256`, the pipeline's headroom). The port hands F to the pipeline as a
//!   `PacketBuf` and re-arms the mbuf with a spare frame before putting it back into its
//!   mempool. Mempools never shrink: every frame that leaves one is replaced.
//! - transmit: the port takes carrier mbufs from the queue's transmit mempool, points each at its
//!   packet's frame (any head offset: encapsulation may have moved it) and keeps the carrier's
//!   previous frame as a spare. What the device does not take is re-armed with its old frame
//!   and stays the caller's.
//! - spares: a frame a carrier gave up waits in the worker thread's stash (the `stash` module) for
//!   the next receive; receive takes one from the pool only when the stash is empty, transmit
//!   gives one to the pool only when the stash is full.
//!
//! Per packet that is a stash pop or push (a pool pop or push at worst) and a few header stores,
//! done a burst at a time through the C shim (one foreign call per burst and step): no
//! allocation, lock or syscall. The ownership invariant (each frame owned by exactly one of the
//! pool, a `PacketBuf`, the stash, or one mbuf) holds across every step. Receive adopts a frame
//! only from an mbuf of the queue's own two mempools, by its `buf_addr`; mbufs from elsewhere
//! (another port's or worker's carriers looped back by a net_ring, a PMD that hands out its own
//! buffers) are copied into a pool buffer, counted (`rx_foreign`, `rx_copied`) and freed.
//!
//! - forwarding within one poll skips the exchange: receive leaves an mbuf of its receive mempool
//!   parked with its frame, and transmit sends the packet in that mbuf (the `parked` module).
//!
//! Receive and transmit use separate mempools so that an mbuf the device allocates for
//! receiving always has the receive layout (`buf_addr = F + 128`): transmit carriers, whose
//! `buf_addr` follows the packet's head, only ever return to the transmit mempool.
//!
//! Real NICs DMA into the frames, so on a PCI device the pool's region is registered as DPDK
//! external memory (`rte_extmem_register`) and mapped for the device (`rte_dev_dma_map`); the
//! virtual devices (af_packet, memif, ring, pcap) only copy in software and need neither.
//! `net_af_xdp` is refused: it builds its UMEM over the mempool's own memory, which an extbuf
//! mempool does not have (ferroplane's `af_xdp` driver is the native way to AF_XDP anyway).

pub mod eal;
mod frames;
mod parked;
pub mod setup;

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use ferroplane_dpdk_sys as sys;
use ferroplane_hugepages::Backing;
use ferroplane_pipeline::buf::{PacketBuf, FRAME_SIZE};
use ferroplane_pipeline::pool::Pool;

use self::frames::{set_window, FrameRegion, IovaMap, MBUF_HEADROOM, RX_BUF_LEN, RX_BUF_OFFSET};
use super::Port;

/// Most frames one rx or tx call moves (the worker's burst).
pub const BURST: usize = 64;
/// Receive and transmit descriptors per queue unless the file says otherwise.
pub const DEFAULT_DESC: u16 = 1024;

/// What to open: one configured DPDK port.
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// The port's configured name.
    pub name: String,
    /// A PCI address or a vdev string (`net_af_packet0,iface=veth0`).
    pub interface: String,
    /// Queues (one per worker).
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    pub mtu: u16,
    /// A MAC to set on the device (the file's `mac`), or `None` to keep the device's.
    pub mac: Option<[u8; 6]>,
}

impl DpdkConfig {
    /// Frames each queue takes from its worker's pool for its two mempools.
    pub fn frames_per_queue(&self) -> usize {
        rx_mbufs(self.rx_desc) + tx_mbufs(self.tx_desc)
    }
}

/// Room for a port's parked receive mbufs: one burst, plus as many waiting for a spare frame.
const PENDING: usize = 2 * BURST;
/// A pending entry whose mbuf is no longer parked with a frame and needs a spare one.
const ORPHAN: u32 = u32::MAX;

/// Receive mbufs per queue: a full ring plus bursts in flight.
fn rx_mbufs(desc: u16) -> usize {
    desc as usize + 2 * BURST
}

/// Transmit carriers per queue: a full ring awaiting completion plus a burst being filled.
fn tx_mbufs(desc: u16) -> usize {
    desc as usize + 2 * BURST
}

/// Counters of one device, summed over its queues (each queue adds to them from its worker).
#[derive(Debug, Default)]
pub struct DpdkCounters {
    /// Received frames dropped because the worker's pool had no frame to re-arm the mbuf.
    pub rx_no_buffer: AtomicU64,
    /// Received mbufs that were not this worker's frames and were copied (counted, not lost).
    pub rx_copied: AtomicU64,
    /// Received mbufs not of the receiving queue's mempools (another port's or worker's, or a
    /// PMD's own): copied (`rx_copied`) when a buffer is free, freed, never adopted.
    pub rx_foreign: AtomicU64,
    /// Received packets in several segments (larger than a frame): dropped.
    pub rx_multi_segment: AtomicU64,
    /// Received packets in one segment that had to be copied (see `rx_foreign`) but are longer
    /// than a pool frame holds after its headroom: dropped.
    pub rx_too_big: AtomicU64,
    /// Frames the transmit mempool had no carrier for (left to the caller, who drops them).
    pub tx_no_mbuf: AtomicU64,
    /// Frames the device's transmit ring refused (left to the caller, who drops them).
    pub tx_ring_full: AtomicU64,
    /// Frames refused by transmit (left to the caller, who drops them) because the pool handed
    /// in was not the queue's, or because they or a frame before them in the burst were not of
    /// the queue's pool.
    pub tx_foreign: AtomicU64,
    /// Link state changes seen (down or up), from [`DeviceStatus::poll_link`].
    pub link_changes: AtomicU64,
}

impl DpdkCounters {
    fn add(c: &AtomicU64, n: u64) {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What the device shares among its queues: closed when the last queue's port is dropped.
struct DeviceShared {
    port_id: u16,
    name: String,
    /// Mempools of every queue, freed once every device is stopped and closed (see [`OPEN`]).
    mempools: Vec<usize>,
}

/// Devices open, and the mempools of closed ones. A packet received on one device may sit in
/// another device's transmit ring in its receive mbuf (see the `parked` module), to be freed
/// into its own mempool whenever that device gets to it: a mempool is freed only when no open
/// device can still hold one of its mbufs, i.e. when the last device closes.
static OPEN: Mutex<(usize, Vec<usize>)> = Mutex::new((0, Vec::new()));

impl DeviceShared {
    fn new(port_id: u16, name: String) -> DeviceShared {
        OPEN.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        DeviceShared { port_id, name, mempools: Vec::new() }
    }
}

impl Drop for DeviceShared {
    fn drop(&mut self) {
        // SAFETY: every queue's port is gone (this is the last reference), so no burst runs on
        // the device; stop and close it, then free the mempools nothing points into any more.
        unsafe {
            let r = sys::rte_eth_dev_stop(self.port_id);
            if r != 0 {
                tracing::warn!(port = self.name, "rte_eth_dev_stop: {}", eal::strerror(-r));
            }
            sys::rte_eth_dev_close(self.port_id);
        }
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        open.1.append(&mut self.mempools);
        open.0 = open.0.saturating_sub(1);
        if open.0 == 0 {
            for mp in open.1.drain(..) {
                // SAFETY: every device is stopped and closed: no ring holds an mbuf of any
                // mempool, and no port is left to use one.
                unsafe { sys::rte_mempool_free(mp as *mut sys::rte_mempool) };
            }
        }
        // The frames the mempools held stay out of their pool: the pool leaks its region
        // rather than unmap memory DPDK could still have touched (see `Pool`'s drop).
        tracing::info!(port = self.name, "DPDK device stopped and closed");
    }
}

/// A probed device, before its queues are set up.
pub struct DpdkDevice {
    cfg: DpdkConfig,
    port_id: u16,
    driver: String,
    bus: String,
    mac: [u8; 6],
    /// Promiscuous because the configured MAC could not be set.
    promiscuous: bool,
    counters: Arc<DpdkCounters>,
}

/// Finds the port DPDK made of `cfg.interface` (EAL must be up, see [`eal::init`]).
pub fn probe(cfg: &DpdkConfig) -> Result<DpdkDevice, String> {
    let devname = eal::device_name(&cfg.interface);
    if devname.starts_with("net_af_xdp") {
        return Err(format!(
            "port `{}`: `{devname}` is not supported on the dpdk driver (its UMEM must be the \
             mempool's own memory, and ferroplane's mbufs carry pool frames); use \
             driver = \"af_xdp\"",
            cfg.name
        ));
    }
    let c = CString::new(devname.as_str())
        .map_err(|_| format!("port `{}`: bad device name `{devname}`", cfg.name))?;
    let mut port_id = 0u16;
    // SAFETY: valid NUL-terminated name and out pointer.
    let r = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut port_id) };
    if r != 0 {
        // SAFETY: plain query.
        let n = unsafe { sys::rte_eth_dev_count_avail() };
        return Err(format!(
            "port `{}`: DPDK has no device `{devname}` (EAL is up with {n} port(s), but `{}` did \
             not probe: see the EAL/PMD messages above; a vdev needs its driver (net_af_packet, \
             net_memif, net_ring, net_pcap, ...) and valid arguments, e.g. an existing iface=)",
            cfg.name, cfg.interface
        ));
    }
    // SAFETY: dev_info is plain data filled by DPDK for a valid port id.
    let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
    // SAFETY: valid port id and out pointer.
    let r = unsafe { sys::rte_eth_dev_info_get(port_id, &mut info) };
    if r != 0 {
        return Err(format!("port `{}`: rte_eth_dev_info_get: {}", cfg.name, eal::strerror(-r)));
    }
    let cstr = |p: *const libc::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: DPDK's static, NUL-terminated names.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let driver = cstr(info.driver_name);
    // SAFETY: `device` comes from dev_info; rte_dev_bus returns the bus it is on.
    let bus = unsafe {
        let b = sys::rte_dev_bus(info.device);
        if b.is_null() {
            String::new()
        } else {
            cstr(sys::rte_bus_name(b))
        }
    };
    if (info.max_rx_queues as usize) < cfg.queues as usize
        || (info.max_tx_queues as usize) < cfg.queues as usize
    {
        return Err(format!(
            "port `{}`: `{devname}` ({driver}) has at most {} rx and {} tx queue(s), fewer than \
             queues = {} (one per worker){}",
            cfg.name,
            info.max_rx_queues,
            info.max_tx_queues,
            cfg.queues,
            if driver.contains("af_packet") { "; net_af_packet takes qpairs=N" } else { "" }
        ));
    }
    let mut promiscuous = false;
    if let Some(mac) = cfg.mac {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port id and address.
        let r = unsafe { sys::rte_eth_dev_default_mac_addr_set(port_id, &mut a) };
        if r != 0 {
            // The device keeps its own MAC (reported below, so neighbours resolve to it); frames
            // sent to the configured one must not be filtered out by the device either.
            // SAFETY: valid port id.
            let p = unsafe { sys::rte_eth_promiscuous_enable(port_id) };
            promiscuous = p == 0;
            tracing::warn!(
                port = cfg.name,
                "cannot set the MAC {} on `{devname}`: {}; the port keeps the device's MAC{}",
                fmt_mac(&mac),
                eal::strerror(-r),
                if promiscuous {
                    " and receives in promiscuous mode (frames to the configured MAC still \
                     arrive)"
                } else {
                    ", and promiscuous mode failed too: frames to the configured MAC are \
                     filtered"
                }
            );
        }
    }
    let mut a = sys::rte_ether_addr { addr_bytes: [0; 6] };
    // SAFETY: valid port id and out pointer.
    let r = unsafe { sys::rte_eth_macaddr_get(port_id, &mut a) };
    if r != 0 {
        return Err(format!("port `{}`: rte_eth_macaddr_get: {}", cfg.name, eal::strerror(-r)));
    }
    Ok(DpdkDevice {
        cfg: cfg.clone(),
        port_id,
        driver,
        bus,
        mac: a.addr_bytes,
        promiscuous,
        counters: Arc::new(DpdkCounters::default()),
    })
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Registers `region` with EAL and maps it for DMA by `dev` (PCI devices only), once per region.
fn dma_map(dev: *mut sys::rte_device, region: &FrameRegion, page: usize) -> Result<(), String> {
    static REGISTERED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    let mut reg = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    let len = region.len().div_ceil(page) * page;
    if !reg.contains(&region.base()) {
        // SAFETY: the region is mapped for the process's lifetime (pools leak rather than unmap
        // memory DPDK may hold); IOVA table omitted (IOVA as VA or looked up by DPDK).
        let r = unsafe {
            sys::rte_extmem_register(
                region.base() as *mut libc::c_void,
                len,
                std::ptr::null_mut(),
                0,
                page,
            )
        };
        if r != 0 && eal::errno() != libc::EEXIST {
            return Err(format!("rte_extmem_register: {}", eal::strerror(eal::errno())));
        }
        reg.push(region.base());
    }
    // SAFETY: the region was registered above; `dev` is a probed device.
    let r = unsafe {
        sys::rte_dev_dma_map(
            dev,
            region.base() as *mut libc::c_void,
            region.iova(region.base()),
            len,
        )
    };
    if r != 0 && eal::errno() != libc::EEXIST {
        return Err(format!("rte_dev_dma_map: {}", eal::strerror(eal::errno())));
    }
    Ok(())
}

/// `rte_mem_virt2phy`'s answer for an address it cannot translate (DPDK's `RTE_BAD_IOVA`, a
/// cast bindgen does not carry over).
const BAD_IOVA: u64 = u64::MAX;

/// IO addresses for a pool region of `len` bytes at `base`: the address itself in IOVA-as-VA
/// mode, else each page's physical address (read once here, never on the fast path).
fn iova_map(base: usize, len: usize, backing: Backing) -> Result<IovaMap, String> {
    // SAFETY: plain query of EAL's mode.
    if unsafe { sys::rte_eal_iova_mode() } != sys::rte_iova_mode_RTE_IOVA_PA {
        return Ok(IovaMap::Va);
    }
    // SAFETY: `p` is a mapped address of the pool's region; the lookup only reads pagemap.
    iova_pages(base, len, backing, |p| unsafe { sys::rte_mem_virt2phy(p as *const libc::c_void) })
}

/// Physical addresses of the pages of a region, for physical-address IOVA mode. A device DMAs
/// to them long after they were read, so they must never change: only huge pages qualify
/// (never swapped, moved or merged; ordinary pages can be, behind DPDK's back). Each page is
/// written to first (a read of a never-touched page may map a shared zero page, whose address
/// is not the page's own), then translated with `virt2phy`; an address it cannot translate
/// (no permission to read physical addresses, a page not present) is an error, not an IO
/// address for a device to write to.
fn iova_pages(
    base: usize,
    len: usize,
    backing: Backing,
    virt2phy: impl Fn(usize) -> u64,
) -> Result<IovaMap, String> {
    if backing != Backing::HugePages {
        return Err(
            "EAL runs in physical-address IOVA mode, which needs the worker's pool on \
                    huge pages (its pool is on ordinary pages, whose physical addresses can \
                    change under a DMA): reserve huge pages (`echo 1024 > \
                    /proc/sys/vm/nr_hugepages`) or give EAL `--iova-mode=va` (VFIO with an IOMMU)"
                .to_string(),
        );
    }
    let page = ferroplane_hugepages::HUGE_PAGE_SIZE;
    let iovas = (0..len.div_ceil(page))
        .map(|i| {
            let p = base + i * page;
            // SAFETY: `p` is inside the pool's mapped region, and the port is being set up by
            // the pool's owner (`&mut Pool`, no worker runs on it yet): writing back the byte
            // just read changes nothing.
            unsafe {
                let v = std::ptr::read_volatile(p as *const u8);
                std::ptr::write_volatile(p as *mut u8, v);
            }
            match virt2phy(p) {
                BAD_IOVA => Err(format!(
                    "no physical address for the pool's page at {p:#x} (rte_mem_virt2phy \
                     failed: reading /proc/self/pagemap needs CAP_SYS_ADMIN); give EAL \
                     `--iova-mode=va` or run with that capability"
                )),
                a => Ok(a),
            }
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(IovaMap::Pages { page_shift: page.trailing_zeros(), iovas })
}

/// The frame a received mbuf's buffer is, and the packet's offset in it, when the receiving
/// queue may take it over: `ours` (the mbuf is of the queue's own mempools), its `buf_addr` in
/// the region, and its data inside that frame. `None`: copy the packet out instead.
#[inline]
fn adoptable(region: &FrameRegion, v: &sys::fp_mbuf_view, ours: bool) -> Option<(usize, usize)> {
    if !ours {
        return None;
    }
    let f = region.frame_of(v.buf_addr as usize)?;
    let head = (v.data as usize).checked_sub(region.frame_addr(f))?;
    (head + v.data_len as usize <= FRAME_SIZE).then_some((f, head))
}

/// Frames between a transmit and the next receive of the same worker: the frame a carrier gave
/// up on transmit re-arms the next received mbuf directly, without becoming a `PacketBuf` in
/// the pool in between (building one and pushing it, then popping and resetting it, cost more
/// than the rest of the exchange). Frames in a thread's stash are owned by that thread's stash
/// alone; only the worker thread that owns the pool (and runs every port of it) touches them.
mod stash {
    use std::cell::RefCell;

    /// Most frames a stash holds per pool region; more go back to the pool.
    pub const CAPACITY: usize = 256;

    thread_local! {
        /// (region base, frame indices) per pool region this thread has used.
        static STASHES: RefCell<Vec<(usize, Vec<u32>)>> = const { RefCell::new(Vec::new()) };
    }

    /// Takes the stash of the region at `base` out (empty if none yet; allocation-free).
    #[inline]
    pub fn take(base: usize) -> Vec<u32> {
        STASHES.with(|s| {
            let mut s = s.borrow_mut();
            s.iter_mut()
                .find(|(b, _)| *b == base)
                .map(|(_, v)| std::mem::take(v))
                .unwrap_or_default()
        })
    }

    /// Frames in the calling thread's stash of the region at `base`.
    pub fn len(base: usize) -> usize {
        STASHES.with(|s| s.borrow().iter().find(|(b, _)| *b == base).map_or(0, |(_, v)| v.len()))
    }

    /// Puts a stash back. Its capacity is allocated once, on a thread's first transmit.
    #[inline]
    pub fn put(base: usize, mut stash: Vec<u32>) {
        if stash.capacity() == 0 {
            stash.reserve_exact(CAPACITY);
        }
        STASHES.with(|s| {
            let mut s = s.borrow_mut();
            match s.iter_mut().find(|(b, _)| *b == base) {
                Some((_, v)) => *v = stash,
                None => s.push((base, stash)),
            }
        })
    }
}

/// Mbufs each worker keeps in its own cache of a queue's mempool (DPDK's per-lcore cache): a
/// burst's allocations and frees then touch only the cache, not the mempool's shared ring.
const MEMPOOL_CACHE: usize = 256;

/// Makes the calling thread an EAL thread (once per thread), so that mempool caches work for it:
/// ferroplane's workers are its own threads, not EAL lcores, and without an lcore id every
/// mempool get and put goes to the shared ring. Failing (all lcore ids taken) only costs speed.
#[inline]
fn ensure_eal_thread() {
    thread_local! {
        static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    REGISTERED.with(|r| {
        if !r.get() {
            r.set(true);
            // SAFETY: EAL is up (a port exists); registering the calling thread is allowed from
            // any non-EAL thread, once.
            if unsafe { sys::rte_thread_register() } != 0 {
                tracing::warn!(
                    "worker thread not registered with DPDK ({}): mempools run without a cache",
                    eal::strerror(eal::errno())
                );
            }
        }
    });
}

/// Takes `n` frames out of `pool` and builds an extbuf mempool over them (receive layout:
/// `buf_addr = frame + 128`). On failure the frames go back to the pool.
fn frame_mempool(
    name: &str,
    pool: &mut Pool,
    region: &FrameRegion,
    n: usize,
    socket: i32,
) -> Result<*mut sys::rte_mempool, String> {
    let mut bufs = Vec::with_capacity(n);
    while bufs.len() < n {
        match pool.alloc() {
            Some(b) => bufs.push(b),
            None => break,
        }
    }
    if bufs.len() < n {
        let have = bufs.len();
        for b in bufs {
            pool.free(b);
        }
        return Err(format!("mempool {name}: the worker's pool has {have} free frames, needs {n}"));
    }
    let ext: Vec<sys::rte_pktmbuf_extmem> = bufs
        .iter()
        .map(|b| {
            let a = b.frame_ptr() as usize + RX_BUF_OFFSET;
            sys::rte_pktmbuf_extmem {
                buf_ptr: a as *mut libc::c_void,
                buf_iova: region.iova(a),
                buf_len: RX_BUF_LEN,
                elt_size: RX_BUF_LEN as u16,
            }
        })
        .collect();
    let cname = CString::new(name).map_err(|_| format!("mempool name {name}"))?;
    // SAFETY: `ext` describes n frames this function owns (taken from the pool above); the
    // mempool copies the descriptors, and the frames become its mbufs' buffers.
    let mp = unsafe {
        sys::rte_pktmbuf_pool_create_extbuf(
            cname.as_ptr(),
            n as u32,
            // DPDK requires cache * 1.5 <= n.
            MEMPOOL_CACHE.min(n * 2 / 3) as u32,
            0,
            RX_BUF_LEN as u16,
            socket,
            ext.as_ptr(),
            ext.len() as u32,
        )
    };
    if mp.is_null() {
        let e = eal::errno();
        for b in bufs {
            pool.free(b);
        }
        return Err(format!("rte_pktmbuf_pool_create_extbuf({name}): {}", eal::strerror(e)));
    }
    // The frames now belong to the mempool's mbufs: the buffers go (a PacketBuf has no Drop:
    // dropping one releases nothing) and only the port's exchange brings a frame back.
    drop(bufs);
    Ok(mp)
}

impl DpdkDevice {
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// The device's MAC as read back from it: the file's `mac` if the device took it, else
    /// the device's own (then [`DpdkDevice::promiscuous`] says whether frames to the configured
    /// one still arrive).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Whether the device was put in promiscuous mode because it refused the configured MAC.
    pub fn promiscuous(&self) -> bool {
        self.promiscuous
    }

    /// The PMD's name (`net_af_packet`, `net_memif`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// A handle for `fpctl port show` and link polling, valid while the device is open.
    pub fn status(&self) -> DeviceStatus {
        DeviceStatus {
            port_id: self.port_id,
            counters: self.counters.clone(),
            open: Weak::new(),
            last_link: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    /// Configures the device with one rx and one tx queue per pool (queue `q` serves the worker
    /// of `pools[q]`), starts it, and returns one port per queue. Each queue's mempools take
    /// [`DpdkConfig::frames_per_queue`] frames from its worker's pool.
    pub fn start(self, pools: &mut [Pool]) -> Result<(Vec<DpdkPort>, DeviceStatus), String> {
        let cfg = &self.cfg;
        let nq = cfg.queues;
        if pools.len() != nq as usize {
            return Err(format!(
                "port `{}`: {} queue(s) but {} worker pool(s)",
                cfg.name,
                nq,
                pools.len()
            ));
        }
        let e = |what: &str, r: i32| format!("port `{}`: {what}: {}", cfg.name, eal::strerror(-r));
        // SAFETY: dev_info is plain data filled by DPDK for a valid port id.
        let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid port id and out pointer.
        let r = unsafe { sys::rte_eth_dev_info_get(self.port_id, &mut info) };
        if r != 0 {
            return Err(e("rte_eth_dev_info_get", r));
        }
        // SAFETY: rte_eth_conf is plain data; all-zero is DPDK's documented default.
        let mut conf: sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        if nq > 1 && info.flow_type_rss_offloads != 0 {
            // Spread flows over the workers' queues by the device's hash (real NICs; the
            // vdevs have no RSS and spread by their own means, e.g. af_packet's fanout).
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads;
        }
        // SAFETY: valid port id and configuration.
        let r = unsafe { sys::rte_eth_dev_configure(self.port_id, nq, nq, &conf) };
        if r != 0 {
            return Err(e("rte_eth_dev_configure", r));
        }
        let (mut rx_desc, mut tx_desc) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port id and in/out pointers.
        let r = unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.port_id, &mut rx_desc, &mut tx_desc)
        };
        if r != 0 {
            return Err(e("rte_eth_dev_adjust_nb_rx_tx_desc", r));
        }
        // SAFETY: valid port id.
        let r = unsafe { sys::rte_eth_dev_set_mtu(self.port_id, cfg.mtu) };
        if r != 0 {
            tracing::debug!(port = cfg.name, "MTU {} not set: {}", cfg.mtu, eal::strerror(-r));
        }
        // SAFETY: valid port id.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.port_id) }.max(0);
        let mut shared = DeviceShared::new(self.port_id, cfg.name.clone());
        let mut regions = Vec::new();
        let mut queues = Vec::new();
        for (q, pool) in pools.iter_mut().enumerate() {
            let backing = pool.backing();
            let page = match backing {
                Backing::HugePages => ferroplane_hugepages::HUGE_PAGE_SIZE,
                Backing::SmallPages => ferroplane_hugepages::PAGE_SIZE,
            };
            let region = FrameRegion::of(pool, |b, l| iova_map(b, l, backing))
                .map_err(|m| format!("port `{}` queue {q}: {m}", cfg.name))?;
            if self.bus == "pci" {
                dma_map(info.device, &region, page)
                    .map_err(|m| format!("port `{}` queue {q}: {m}", cfg.name))?;
            }
            let rx = frame_mempool(
                &format!("fp{}q{q}rx", self.port_id),
                pool,
                &region,
                rx_mbufs(rx_desc),
                socket,
            )
            .map_err(|m| format!("port `{}` queue {q}: {m}", cfg.name))?;
            shared.mempools.push(rx as usize);
            let tx = frame_mempool(
                &format!("fp{}q{q}tx", self.port_id),
                pool,
                &region,
                tx_mbufs(tx_desc),
                socket,
            )
            .map_err(|m| format!("port `{}` queue {q}: {m}", cfg.name))?;
            shared.mempools.push(tx as usize);
            // SAFETY: valid port/queue ids; default queue configuration; `rx` outlives the
            // device (freed in DeviceShared's drop, after the device is closed).
            let r = unsafe {
                sys::rte_eth_rx_queue_setup(
                    self.port_id,
                    q as u16,
                    rx_desc,
                    socket as u32,
                    std::ptr::null(),
                    rx,
                )
            };
            if r != 0 {
                return Err(e(&format!("rte_eth_rx_queue_setup (queue {q})"), r));
            }
            // SAFETY: as above.
            let r = unsafe {
                sys::rte_eth_tx_queue_setup(
                    self.port_id,
                    q as u16,
                    tx_desc,
                    socket as u32,
                    std::ptr::null(),
                )
            };
            if r != 0 {
                return Err(e(&format!("rte_eth_tx_queue_setup (queue {q})"), r));
            }
            regions.push(region);
            queues.push((rx, tx));
        }
        // Routers need the multicast groups of IPv6 neighbour discovery; devices without the
        // knob (most vdevs) deliver everything anyway.
        // SAFETY: valid port id.
        unsafe { sys::rte_eth_allmulticast_enable(self.port_id) };
        // SAFETY: valid, configured port.
        let r = unsafe { sys::rte_eth_dev_start(self.port_id) };
        if r != 0 {
            return Err(e("rte_eth_dev_start", r));
        }
        let mode =
            format!("dpdk {} ({} queue(s), {rx_desc}/{tx_desc} desc, zero-copy)", self.driver, nq);
        tracing::info!(port = cfg.name, interface = cfg.interface, "{mode} started");
        let shared = Arc::new(shared);
        let mut status = self.status();
        status.open = Arc::downgrade(&shared);
        status.poll_link(&cfg.name);
        let ports = queues
            .into_iter()
            .zip(regions)
            .enumerate()
            .map(|(q, ((rx, tx), region))| DpdkPort {
                name: cfg.name.clone(),
                mode: mode.clone(),
                port_id: self.port_id,
                queue: q as u16,
                parked: parked::for_region(region.base(), region.frames()),
                pending: [(0, std::ptr::null_mut()); PENDING],
                pending_len: 0,
                orphans: 0,
                region,
                rx_pool: rx,
                tx_pool: tx,
                mbufs: [std::ptr::null_mut(); BURST],
                spare: [std::ptr::null_mut(); BURST],
                views: [sys::fp_mbuf_view::default(); BURST],
                attach: [sys::fp_mbuf_attach::default(); BURST],
                old: [std::ptr::null_mut(); BURST],
                counters: self.counters.clone(),
                _device: shared.clone(),
            })
            .collect();
        Ok((ports, status))
    }
}

/// Link and counters of an open device, readable from any thread.
#[derive(Clone)]
pub struct DeviceStatus {
    port_id: u16,
    counters: Arc<DpdkCounters>,
    open: Weak<DeviceShared>,
    /// The last link state seen by [`DeviceStatus::poll_link`] (u64::MAX: none yet).
    last_link: Arc<AtomicU64>,
}

/// A device's link and counters, for `fpctl port show`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceReport {
    /// `up 10 Gbps full-duplex`, `down`, `unknown` (the device could not tell; its counters
    /// are still there), or `closed`.
    pub link: String,
    /// DPDK's counters (rte_eth_stats) and ferroplane's own, by name.
    pub counters: Vec<(String, u64)>,
}

impl DeviceStatus {
    /// The link, read while `_open` keeps the device from closing.
    fn link(&self, _open: &Arc<DeviceShared>) -> Option<sys::rte_eth_link> {
        // SAFETY: rte_eth_link is plain data.
        let mut l: sys::rte_eth_link = unsafe { std::mem::zeroed() };
        // SAFETY: the device is open (the caller holds it); the query does not wait.
        let r = unsafe { sys::rte_eth_link_get_nowait(self.port_id, &mut l) };
        (r == 0).then_some(l)
    }

    /// Checks the link and counts and logs a change; call it periodically (the daemon does,
    /// every second), never from a worker.
    pub fn poll_link(&self, name: &str) {
        let Some(open) = self.open.upgrade() else { return };
        let Some(l) = self.link(&open) else { return };
        let up = l.link_status() as u64;
        let prev = self.last_link.swap(up, Ordering::Relaxed);
        if prev != up {
            if prev != u64::MAX {
                self.counters.link_changes.fetch_add(1, Ordering::Relaxed);
            }
            if up == 1 {
                tracing::info!(port = name, "link up, {} Mbps", l.link_speed);
            } else {
                tracing::warn!(port = name, "link down: frames sent now are lost");
            }
        }
    }

    /// The link and every counter.
    pub fn report(&self) -> DeviceReport {
        // Held to the end: the device cannot close while its counters are read.
        let Some(open) = self.open.upgrade() else {
            return DeviceReport { link: "closed".into(), counters: Vec::new() };
        };
        // The device is open: a link it cannot tell is `unknown`, and the counters still count.
        let link = match self.link(&open) {
            None => "unknown".to_string(),
            Some(l) => link_text(&l),
        };
        // SAFETY: rte_eth_stats is plain data.
        let mut s: sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: the device is open (`open` holds it); stats_get only reads counters.
        let r = unsafe { sys::rte_eth_stats_get(self.port_id, &mut s) };
        let mut counters = Vec::new();
        if r == 0 {
            counters.extend([
                ("ipackets", s.ipackets),
                ("opackets", s.opackets),
                ("ibytes", s.ibytes),
                ("obytes", s.obytes),
                ("imissed", s.imissed),
                ("ierrors", s.ierrors),
                ("oerrors", s.oerrors),
                ("rx_nombuf", s.rx_nombuf),
            ]);
        }
        let c = &self.counters;
        counters.extend([
            ("rx_no_buffer", c.rx_no_buffer.load(Ordering::Relaxed)),
            ("rx_copied", c.rx_copied.load(Ordering::Relaxed)),
            ("rx_foreign", c.rx_foreign.load(Ordering::Relaxed)),
            ("rx_multi_segment", c.rx_multi_segment.load(Ordering::Relaxed)),
            ("rx_too_big", c.rx_too_big.load(Ordering::Relaxed)),
            ("tx_no_mbuf", c.tx_no_mbuf.load(Ordering::Relaxed)),
            ("tx_ring_full", c.tx_ring_full.load(Ordering::Relaxed)),
            ("tx_foreign", c.tx_foreign.load(Ordering::Relaxed)),
            ("link_changes", c.link_changes.load(Ordering::Relaxed)),
        ]);
        DeviceReport {
            link,
            counters: counters.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }
}

/// `down`, or `up 10 Gbps full-duplex`.
fn link_text(l: &sys::rte_eth_link) -> String {
    if l.link_status() == 0 {
        return "down".to_string();
    }
    let speed = match l.link_speed {
        0 | u32::MAX => "unknown speed".to_string(),
        s if s >= 1000 => format!("{} Gbps", s / 1000),
        s => format!("{s} Mbps"),
    };
    let duplex = if l.link_duplex() == 1 { "full-duplex" } else { "half-duplex" };
    format!("up {speed} {duplex}")
}

/// One queue of a DPDK device, owned by one worker and used with that worker's pool only.
pub struct DpdkPort {
    name: String,
    mode: String,
    port_id: u16,
    queue: u16,
    region: FrameRegion,
    rx_pool: *mut sys::rte_mempool,
    tx_pool: *mut sys::rte_mempool,
    /// The region's parked receive mbufs, shared with the worker's other ports.
    parked: Arc<parked::Parked>,
    /// What this port's receives parked (frame, mbuf), settled by its next reclaim or receive;
    /// frame [`ORPHAN`]: an mbuf taken back that still waits for a spare frame.
    pending: [(u32, *mut sys::rte_mbuf); PENDING],
    pending_len: usize,
    /// How many of `pending`'s first entries are orphans.
    orphans: usize,
    /// Scratch arrays for one burst (preallocated: nothing allocates per burst).
    mbufs: [*mut sys::rte_mbuf; BURST],
    spare: [*mut sys::rte_mbuf; BURST],
    views: [sys::fp_mbuf_view; BURST],
    attach: [sys::fp_mbuf_attach; BURST],
    /// Transmit: each carrier's buffer before it took its packet's frame.
    old: [*mut u8; BURST],
    counters: Arc<DpdkCounters>,
    /// Keeps the device open while any of its queues is.
    _device: Arc<DeviceShared>,
}

// SAFETY: the raw pointers are this queue's mempools (thread-safe rings) and burst scratch
// space; a DpdkPort is used by one thread at a time (its worker), which is all DPDK requires of
// a queue.
unsafe impl Send for DpdkPort {}
// SAFETY: DeviceShared holds only ids and mempool addresses; it is used from whichever thread
// drops the last reference, after every queue's burst has stopped.
unsafe impl Send for DeviceShared {}
// SAFETY: as above; nothing in it is mutated through a shared reference.
unsafe impl Sync for DeviceShared {}

impl DpdkPort {
    /// The queue this port serves.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Mbufs available in this queue's (receive, transmit) mempools, for leak checks.
    pub fn mempool_available(&self) -> (u32, u32) {
        // SAFETY: the mempools live as long as the device, which this port keeps open.
        unsafe {
            (sys::rte_mempool_avail_count(self.rx_pool), sys::rte_mempool_avail_count(self.tx_pool))
        }
    }

    /// Frames of this queue's pool waiting in the calling thread's stash (between a transmit
    /// and the next receive), for leak checks: pool + stash + buffers in hand is constant.
    pub fn stashed_frames(&self) -> usize {
        stash::len(self.region.base())
    }

    /// Re-arms `attach[k]` to give an mbuf frame `frame` in the receive layout.
    #[inline]
    fn rx_layout(&self, frame: usize) -> sys::fp_mbuf_attach {
        let a = frame + RX_BUF_OFFSET;
        sys::fp_mbuf_attach {
            buf_addr: a as *mut u8,
            buf_iova: self.region.iova(a),
            buf_len: RX_BUF_LEN as u16,
            data_off: MBUF_HEADROOM as u16,
            data_len: 0,
        }
    }

    /// A spare frame for an mbuf going back to its mempool: one the stash holds, else a free
    /// frame of the pool (a buffer of another pool goes back to it).
    #[inline]
    fn spare_frame(&self, stash: &mut Vec<u32>, pool: &mut Pool) -> Option<usize> {
        if let Some(s) = stash.pop() {
            return Some(self.region.frame_addr(s as usize));
        }
        match pool.alloc() {
            Some(b) if self.region.owns(&b) => Some(b.frame_ptr() as usize),
            Some(b) => {
                pool.free(b);
                None
            }
            None => None,
        }
    }

    /// Settles what the previous receive parked: an mbuf a transmit took is gone from its slot
    /// (back in its mempool by now, or on its way); one still parked (its packet was dropped,
    /// punted or refused) is taken back, re-armed with a spare frame and put into its mempool.
    /// Without a spare it waits here for the next receive.
    fn settle_parked(&mut self, stash: &mut Vec<u32>, pool: &mut Pool) {
        if self.parked.count() == 0 && self.orphans == 0 {
            // Everything parked was sent (the common case): nothing to take back.
            self.pending_len = 0;
            return;
        }
        let mut rearm = 0;
        let mut keep = 0;
        for j in 0..self.pending_len {
            let (f, m) = self.pending[j];
            if f != ORPHAN && !self.parked.take_if(f as usize, m) {
                continue;
            }
            match self.spare_frame(stash, pool) {
                Some(s) => {
                    self.spare[rearm] = m;
                    self.attach[rearm] = self.rx_layout(s);
                    rearm += 1;
                    if rearm == BURST {
                        // SAFETY: as below.
                        unsafe {
                            sys::fp_mbuf_rearm_put(
                                self.spare.as_ptr(),
                                BURST as u16,
                                self.attach.as_ptr(),
                            )
                        };
                        rearm = 0;
                    }
                }
                None => {
                    self.pending[keep] = (ORPHAN, m);
                    keep += 1;
                }
            }
        }
        self.pending_len = keep;
        self.orphans = keep;
        // SAFETY: each of these mbufs was taken out of its slot (or was an orphan) above, so
        // this port alone owns it: a one-segment mbuf of one of this worker's receive
        // mempools, whose old frame is its packet's owner's; it gets a spare frame taken out
        // of the stash or pool above.
        unsafe { sys::fp_mbuf_rearm_put(self.spare.as_ptr(), rearm as u16, self.attach.as_ptr()) };
    }
}

impl Drop for DpdkPort {
    /// Unparks what this port's last receive parked and nobody transmitted: the entries go,
    /// so no other port sends in an mbuf of a closing device; the mbufs stay out of their
    /// mempool, which is freed with the devices (there is no pool here to re-arm them from).
    fn drop(&mut self) {
        for &(f, m) in &self.pending[..self.pending_len] {
            if f != ORPHAN {
                self.parked.take_if(f as usize, m);
            }
        }
    }
}

impl Port for DpdkPort {
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
        let want = max.min(BURST);
        if want == 0 {
            return 0;
        }
        ensure_eal_thread();
        if self.pending_len > 0 {
            let mut stash = stash::take(self.region.base());
            self.settle_parked(&mut stash, pool);
            stash::put(self.region.base(), stash);
        }
        // SAFETY: `mbufs` and `views` have room for `want` entries; the queue is this worker's;
        // the shim describes the mbufs the device handed over.
        let n = unsafe {
            sys::fp_rx_burst_views(
                self.port_id,
                self.queue,
                self.mbufs.as_mut_ptr(),
                want as u16,
                self.views.as_mut_ptr(),
            )
        } as usize;
        if n == 0 {
            return 0;
        }
        let mut stash = stash::take(self.region.base());
        let stale_possible = self.parked.count() != 0;
        let mut got = 0;
        let mut rearm = 0;
        // Mbufs handed back as they came (no exchange): freed the generic way below.
        let mut plain = 0;
        let (mut no_buf, mut copied, mut multi, mut foreign, mut too_big) = (0, 0, 0, 0, 0);
        for i in 0..n {
            let v = self.views[i];
            if v.nb_segs != 1 || v.data_len as u32 != v.pkt_len {
                multi += 1;
                self.mbufs[plain] = self.mbufs[i];
                plain += 1;
                continue;
            }
            let len = v.data_len as usize;
            // Only an mbuf of this queue's own mempools carries one of this worker's frames as
            // its buffer (`buf_addr`, where the frame's ownership is recorded; the data pointer
            // alone says nothing about whose buffer it is). Any other mbuf (another port's or
            // another worker's, a PMD's own) is copied and freed, never adopted.
            let ours = v.pool == self.rx_pool || v.pool == self.tx_pool;
            if !ours {
                foreign += 1;
            }
            let in_frame = adoptable(&self.region, &v, ours);
            // A receive mbuf in the receive layout stays parked with its frame for a transmit
            // to reuse (see `parked`). A stale entry in the frame's slot (an mbuf parked with it
            // before the frame went round a mempool) needs a spare frame first.
            if let Some((f, head)) = in_frame {
                let parkable = v.pool == self.rx_pool
                    && v.buf_addr as usize == self.region.frame_addr(f) + RX_BUF_OFFSET
                    && self.pending_len < PENDING;
                if parkable {
                    // No slot of the region holds anything when the burst starts (the usual
                    // case: everything parked was sent or taken back), so none can hold a
                    // stale mbuf for this frame: the slot need not be read.
                    let prev = match stale_possible {
                        true => self.parked.get(f),
                        false => std::ptr::null_mut(),
                    };
                    let room = prev.is_null()
                        || match self.spare_frame(&mut stash, pool) {
                            Some(s) => {
                                self.spare[rearm] = prev;
                                self.attach[rearm] = self.rx_layout(s);
                                rearm += 1;
                                true
                            }
                            None => false,
                        };
                    if room {
                        let m = self.mbufs[i];
                        self.parked.park(f, m, prev);
                        self.pending[self.pending_len] = (f as u32, m);
                        self.pending_len += 1;
                        // SAFETY: frame `f` belonged to mbuf i, which stays parked with it: the
                        // buffer owns the frame, and the buffer's owner the parked mbuf. The
                        // window is inside the frame (checked by `adoptable`).
                        out.push(unsafe { self.region.take_window(f, head, len, now_ns) });
                        got += 1;
                        continue;
                    }
                }
            }
            // The frame to re-arm the mbuf with: one a transmit left in the stash, else a
            // free buffer of the pool.
            let mut from_pool = None;
            let spare_frame = match in_frame {
                None => None,
                Some(_) => match stash.pop() {
                    Some(s) => Some(self.region.frame_addr(s as usize)),
                    None => match pool.alloc() {
                        Some(b) if self.region.owns(&b) => Some(b.frame_ptr() as usize),
                        Some(b) => {
                            from_pool = Some(b);
                            None
                        }
                        None => None,
                    },
                },
            };
            match (in_frame, spare_frame) {
                (Some((f, head)), Some(spare)) => {
                    // Exchange: the mbuf takes the spare frame (whose buffer, if it came from
                    // the pool, ends here: a PacketBuf has no Drop), the pipeline takes the
                    // frame the device filled.
                    self.spare[rearm] = self.mbufs[i];
                    self.attach[rearm] = self.rx_layout(spare);
                    rearm += 1;
                    // SAFETY: frame `f` belonged to mbuf i, which is re-armed with the spare
                    // frame below before anything uses it again: the buffer is its only owner.
                    out.push(unsafe { self.region.take(f) });
                    // Set up in place: building it first and then moving it in made the move
                    // read back, in wide loads, what narrower stores had just written (a store
                    // forwarding stall per packet, the hottest spot of the receive path).
                    if let Some(b) = out.last_mut() {
                        // Inside the frame (checked above), so this cannot fail.
                        let _ = set_window(b, head, len);
                        b.meta.timestamp_ns = now_ns;
                    }
                    got += 1;
                }
                _ => {
                    // Not one of this queue's mbufs over this worker's frames (or a pool that
                    // is not this port's, or no spare frame): copy it out (counted), leave the
                    // mbuf its own buffer and free it the generic way.
                    match from_pool.or_else(|| pool.alloc()) {
                        Some(mut b) => {
                            // SAFETY: the device handed over `len` readable bytes at `data`.
                            let bytes = unsafe { std::slice::from_raw_parts(v.data, len) };
                            if b.fill_from(bytes).is_ok() {
                                b.meta.timestamp_ns = now_ns;
                                out.push(b);
                                got += 1;
                                copied += 1;
                            } else {
                                // Longer than a frame holds after its headroom: dropped.
                                pool.free(b);
                                too_big += 1;
                            }
                        }
                        None => no_buf += 1,
                    }
                    self.mbufs[plain] = self.mbufs[i];
                    plain += 1;
                }
            }
        }
        stash::put(self.region.base(), stash);
        // `mbufs[..plain]` only ever moves entries down (plain <= i), so every mbuf of the
        // burst is now in exactly one of `spare[..rearm]` and `mbufs[..plain]`.
        // SAFETY: the first `rearm` spares are mbufs of this burst (refcnt 1, one segment, of
        // this worker's pinned-extbuf mempools, since they held this worker's frames) and their
        // new frames were taken out of the pool above.
        unsafe { sys::fp_mbuf_rearm_put(self.spare.as_ptr(), rearm as u16, self.attach.as_ptr()) };
        if plain > 0 {
            // SAFETY: these mbufs are ours to free, each still with its own buffer.
            unsafe { sys::rte_pktmbuf_free_bulk(self.mbufs.as_mut_ptr(), plain as u32) };
        }
        let c = &self.counters;
        DpdkCounters::add(&c.rx_no_buffer, no_buf);
        DpdkCounters::add(&c.rx_copied, copied);
        DpdkCounters::add(&c.rx_multi_segment, multi);
        DpdkCounters::add(&c.rx_foreign, foreign);
        DpdkCounters::add(&c.rx_too_big, too_big);
        got
    }

    fn tx_burst(&mut self, pool: &mut Pool, pkts: &mut Vec<PacketBuf>) -> usize {
        let offered = pkts.len().min(BURST);
        // The carriers' previous frames go to `pool` below: it must be the pool this queue's
        // frames are of (never otherwise in the daemon). Checked once per burst; a foreign pool
        // has the whole burst refused, counted per packet.
        if pool.base() as usize != self.region.base() {
            DpdkCounters::add(&self.counters.tx_foreign, offered as u64);
            return 0;
        }
        // Only this worker's frames can be handed to the device; a buffer of another pool
        // (never in the daemon) is refused with everything after it, counted per packet.
        let owned = pkts.iter().take(BURST).take_while(|b| self.region.owns(b)).count();
        DpdkCounters::add(&self.counters.tx_foreign, (offered - owned) as u64);
        let mut n = owned;
        if n == 0 {
            return 0;
        }
        ensure_eal_thread();
        for (i, b) in pkts[..n].iter().enumerate() {
            let f = b.frame_ptr() as usize;
            let head = b.head_offset();
            // The mbuf the packet arrived in, when it is still parked with the frame and its
            // fixed `buf_addr` (frame + RX_BUF_OFFSET) is not past the packet's head (a
            // packet encapsulated that far in front needs a carrier).
            let own = self.parked.get(b.index() as usize);
            let reuse = !own.is_null() && head >= RX_BUF_OFFSET;
            self.mbufs[i] = if reuse { own } else { std::ptr::null_mut() };
            // A parked mbuf keeps its buffer: only the data window is read for it.
            self.attach[i] = if reuse {
                sys::fp_mbuf_attach {
                    data_off: (head - RX_BUF_OFFSET) as u16,
                    data_len: b.len() as u16,
                    ..Default::default()
                }
            } else {
                sys::fp_mbuf_attach {
                    buf_addr: f as *mut u8,
                    buf_iova: self.region.iova(f),
                    buf_len: FRAME_SIZE as u16,
                    data_off: head as u16,
                    data_len: b.len() as u16,
                }
            };
        }
        // Carriers: the parked mbufs, and for the others one from the transmit mempool pointed
        // at its packet's frame, its previous buffer kept in `old`. All or nothing: when the
        // carriers run short, send the packets up to the first one there is none for.
        // SAFETY: `mbufs`, `attach` and `old` have room for n entries; the mempool is this
        // queue's; the non-null `mbufs` are parked with their packets' frames (ours while we
        // hold the packets); the packets stay in `pkts`, untouched, until the device's answer
        // says who owns their frames.
        while n > 0
            && unsafe {
                sys::fp_tx_prepare(
                    self.tx_pool,
                    self.mbufs.as_mut_ptr(),
                    n as u16,
                    self.attach.as_ptr(),
                    self.old.as_mut_ptr(),
                )
            } != 0
        {
            // SAFETY: plain query of a live mempool.
            let avail = unsafe { sys::rte_mempool_avail_count(self.tx_pool) } as usize;
            let mut need = 0;
            let first_short = self.mbufs[..n].iter().position(|m| {
                need += m.is_null() as usize;
                need > avail
            });
            n = first_short.unwrap_or(n).min(n - 1);
        }
        DpdkCounters::add(&self.counters.tx_no_mbuf, (owned - n) as u64);
        if n == 0 {
            return 0;
        }
        // SAFETY: the carriers are valid one-segment mbufs for this queue's port.
        let sent = unsafe {
            sys::fp_tx_burst(self.port_id, self.queue, self.mbufs.as_mut_ptr(), n as u16)
        } as usize;
        // Sent: each carrier owns its packet's frame now. A parked mbuf leaves its slot; a
        // mempool carrier's previous frame goes to the stash (the next receive re-arms an mbuf
        // with it), or to the pool when the stash is full. Each drained buffer ends here: its
        // frame is the carrier's now (no Drop to run).
        let mut stash = stash::take(self.region.base());
        for (i, b) in pkts.drain(..sent).enumerate() {
            if self.old[i].is_null() {
                self.parked.take_if(b.index() as usize, self.mbufs[i]);
            } else if let Some(f) = self.region.frame_of(self.old[i] as usize) {
                if stash.len() < stash::CAPACITY {
                    stash.push(f as u32);
                } else {
                    // SAFETY: the carrier pointed at frame `f` before the exchange above and
                    // points at the packet's frame now: `f` is ours alone.
                    pool.free(unsafe { self.region.take(f) });
                }
            }
        }
        stash::put(self.region.base(), stash);
        // Refused: a parked mbuf stays parked (its port's next reclaim takes it back if
        // nothing sends it); a mempool carrier gets its previous frame back and returns to its
        // mempool. The packets stay in `pkts` for the caller to count.
        let refused = n - sent;
        if refused > 0 {
            let mut back = 0;
            for i in sent..n {
                let old = self.old[i] as usize;
                if old == 0 {
                    continue;
                }
                self.spare[back] = self.mbufs[i];
                self.attach[back] = match self.region.frame_of(old) {
                    Some(f) => self.rx_layout(self.region.frame_addr(f)),
                    // Carriers only ever hold this region's frames; should one not, put its
                    // buffer back exactly as it was rather than guess.
                    None => sys::fp_mbuf_attach {
                        buf_addr: self.old[i],
                        buf_iova: self.region.iova(old),
                        buf_len: RX_BUF_LEN as u16,
                        data_off: MBUF_HEADROOM as u16,
                        data_len: 0,
                    },
                };
                back += 1;
            }
            // SAFETY: these refused carriers are still ours (the device did not take them),
            // one segment each, of this queue's pinned-extbuf transmit mempool.
            unsafe {
                sys::fp_mbuf_rearm_put(self.spare.as_ptr(), back as u16, self.attach.as_ptr())
            };
            DpdkCounters::add(&self.counters.tx_ring_full, refused as u64);
        }
        sent
    }

    /// Takes back what the last receive parked and nobody sent, at the start of every poll,
    /// before any port receives: so a receive normally finds the whole region's table empty.
    fn reclaim(&mut self, pool: &mut Pool) {
        if self.pending_len > 0 {
            let mut stash = stash::take(self.region.base());
            self.settle_parked(&mut stash, pool);
            stash::put(self.region.base(), stash);
        }
    }

    fn mode_name(&self) -> Option<String> {
        Some(self.mode.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::frames::{IovaMap, RX_BUF_OFFSET};
    use super::*;
    use ferroplane_hugepages::Policy;

    #[test]
    fn physical_addresses_need_huge_pages_and_a_translation() {
        let small = Pool::new(64, Policy::SmallOnly).unwrap();
        let r = iova_pages(small.base() as usize, 64 * FRAME_SIZE, small.backing(), |p| p as u64);
        assert!(r.unwrap_err().contains("needs the worker's pool on huge pages"));
        let mut huge = Pool::new(2048, Policy::RequireHuge)
            .expect("huge pages: reserve some with `echo 256 > /proc/sys/vm/nr_hugepages`");
        assert_eq!(huge.backing(), Backing::HugePages);
        let (base, len) = (huge.base() as usize, 2048 * FRAME_SIZE);
        // A page virt2phy cannot translate is an error, never an IO address.
        let r = iova_pages(base, len, Backing::HugePages, |p| {
            if p == base + HUGE {
                BAD_IOVA
            } else {
                p as u64
            }
        });
        let e = r.unwrap_err();
        assert!(e.contains("no physical address") && e.contains("rte_mem_virt2phy"), "{e}");
        // DPDK's own translation (root reads pagemap): one page-aligned address per huge page,
        // taken after each page was written to.
        let b = huge.alloc().unwrap();
        let r = iova_pages(base, len, Backing::HugePages, |p| {
            // SAFETY: plain translation of a mapped address.
            unsafe { sys::rte_mem_virt2phy(p as *const libc::c_void) }
        })
        .unwrap();
        let IovaMap::Pages { page_shift, iovas } = r else { panic!("{r:?}") };
        assert_eq!(1usize << page_shift, HUGE);
        assert_eq!(iovas.len(), len.div_ceil(HUGE));
        assert!(
            iovas.iter().all(|&a| a != BAD_IOVA && a != 0 && a % HUGE as u64 == 0),
            "{iovas:x?}"
        );
        huge.free(b);
    }

    const HUGE: usize = ferroplane_hugepages::HUGE_PAGE_SIZE;

    #[test]
    fn receive_adopts_only_its_own_mbufs_by_their_buffer() {
        let mut pool = Pool::new(16, Policy::SmallOnly).unwrap();
        let r = FrameRegion::of(&mut pool, |_, _| Ok(IovaMap::Va)).unwrap();
        let f3 = r.frame_addr(3);
        let view = |buf: usize, data: usize, len: u16| sys::fp_mbuf_view {
            data: data as *mut u8,
            buf_addr: buf as *mut u8,
            pkt_len: len as u32,
            data_len: len,
            nb_segs: 1,
            ..Default::default()
        };
        // Receive layout and a transmit carrier's (buf_addr at the frame, any head).
        let rx = view(f3 + RX_BUF_OFFSET, f3 + FRAME_SIZE - 1792, 1792);
        assert_eq!(adoptable(&r, &rx, true), Some((3, FRAME_SIZE - 1792)));
        assert_eq!(adoptable(&r, &view(f3, f3 + 58, 100), true), Some((3, 58)));
        // The very same buffer in an mbuf of another mempool is never taken over.
        assert_eq!(adoptable(&r, &rx, false), None);
        // The buffer, not the data pointer, names the frame: a buffer outside the region whose
        // data pointer points into it is not one of the region's frames.
        let outside = r.base() + r.len() + 4096;
        assert_eq!(adoptable(&r, &view(outside, f3 + 256, 60), true), None);
        assert_eq!(adoptable(&r, &view(r.base().wrapping_sub(64), r.base() + 64, 60), true), None);
        // Data running past the end of the buffer's frame.
        assert_eq!(adoptable(&r, &view(f3, f3 + 2000, 100), true), None);
    }
}
