//! DPDK's Environment Abstraction Layer: started once per process, from `[dataplane] eal_args`
//! and the ports' devices.
//!
//! EAL cannot be started twice in one process (a second `rte_eal_init` fails with EALREADY, and
//! a failed first one may leave it unusable), so [`init`] remembers its outcome: a later call
//! with the same arguments gets the same answer, one with different arguments a clear error.

use std::ffi::{CStr, CString};
use std::sync::Mutex;

use ferroplane_dpdk_sys as sys;

/// EAL arguments when the file has no `eal_args`: no PCI scan (ports name their devices), and
/// all memory private to the process on huge pages.
pub const DEFAULT_ARGS: &[&str] = &["--no-pci", "--in-memory"];
/// The fallback when no huge pages are free: EAL on ordinary pages (slower: TLB misses).
pub const NO_HUGE_ARGS: &[&str] = &["--no-pci", "--no-huge", "--no-shconf"];
/// Free huge pages (2 MiB) below which the default arguments fall back to [`NO_HUGE_ARGS`]:
/// EAL's own heap, ring and mempool headers need a few tens of MiB.
const MIN_FREE_HUGE_PAGES: u64 = 32;

/// The process's one EAL start: the arguments used and the outcome.
type Started = (Vec<String>, Result<(), String>);
static STARTED: Mutex<Option<Started>> = Mutex::new(None);

/// Free 2 MiB huge pages, from /proc/meminfo (0 when unreadable).
pub fn free_huge_pages() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("HugePages_Free:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub use crate::config::{dpdk_device_name as device_name, is_pci_address as is_pci};

/// The whole EAL command line: program name, `eal_args` (or the defaults), then one `--vdev` or
/// `-a` per port device. Returns a warning to log when the defaults had to fall back. The
/// defaults keep `--no-pci` only while no port is a PCI device (those are then allowed with
/// `-a`, so EAL probes nothing else).
pub fn argv(eal_args: Option<&[String]>, interfaces: &[String]) -> (Vec<String>, Option<String>) {
    let mut v = vec!["ferroplane".to_string()];
    let mut warning = None;
    let any_pci = interfaces.iter().any(|i| is_pci(i));
    match eal_args {
        Some(a) => v.extend(a.iter().cloned()),
        None => {
            let free = free_huge_pages();
            let args = if free >= MIN_FREE_HUGE_PAGES {
                DEFAULT_ARGS
            } else {
                warning = Some(format!(
                    "only {free} free huge page(s) (DPDK wants at least {MIN_FREE_HUGE_PAGES}): \
                     starting EAL with `{}` on ordinary pages; reserve huge pages with `echo 256 \
                     > /proc/sys/vm/nr_hugepages`, or set [dataplane] eal_args",
                    NO_HUGE_ARGS.join(" ")
                ));
                NO_HUGE_ARGS
            };
            v.extend(
                args.iter().filter(|a| !(any_pci && **a == "--no-pci")).map(|s| s.to_string()),
            );
        }
    }
    for i in interfaces {
        if is_pci(i) {
            v.push("-a".into());
        } else {
            v.push("--vdev".into());
        }
        v.push(device_args(i));
    }
    (v, warning)
}

/// net_af_packet's ring frames: 1824 bytes hold 1792 bytes of packet after the 32 bytes of
/// TPACKET header the PMD counts, exactly what a pool frame holds after its 256 bytes of
/// headroom. The PMD's default (2048) would need 2016 and refuses the queue.
pub const AF_PACKET_FRAMESZ: u32 = 1824;
/// net_af_packet's ring blocks: the PMD walks the ring at `framesz` strides, so a block must
/// hold whole frames with nothing left over (and be a multiple of the 4 KiB page): the least
/// common multiple of 1824 and 4096 (128 frames a block).
pub const AF_PACKET_BLOCKSZ: u32 = 233_472;

/// A port's device string as EAL gets it: net_af_packet gets `framesz` and `blocksz` sized to
/// ferroplane's frames unless the file set them.
pub fn device_args(interface: &str) -> String {
    if device_name(interface).starts_with("net_af_packet")
        && !interface.contains("framesz=")
        && !interface.contains("blocksz=")
    {
        format!("{interface},blocksz={AF_PACKET_BLOCKSZ},framesz={AF_PACKET_FRAMESZ}")
    } else {
        interface.to_string()
    }
}

/// `rte_strerror` of an errno or rte_errno value.
pub fn strerror(e: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(sys::rte_strerror(e)) }.to_string_lossy().into_owned()
}

/// The calling thread's rte_errno.
pub fn errno() -> i32 {
    // SAFETY: reads a thread-local integer.
    unsafe { sys::fp_errno() }
}

/// Starts EAL with `argv` (see [`argv`]), once per process.
pub fn init(argv: &[String]) -> Result<(), String> {
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((prev, outcome)) = started.as_ref() {
        if prev.as_slice() == argv {
            return outcome.clone();
        }
        return Err(format!(
            "DPDK's EAL was already started in this process with `{}`; it starts once per \
             process and cannot take `{}`",
            prev[1..].join(" "),
            argv[1..].join(" ")
        ));
    }
    let outcome = start(argv);
    *started = Some((argv.to_vec(), outcome.clone()));
    outcome
}

fn start(argv: &[String]) -> Result<(), String> {
    let cargs: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()).map_err(|_| format!("EAL argument `{a}` contains NUL")))
        .collect::<Result<_, _>>()?;
    // EAL keeps pointers into argv (and may permute it): the strings live for the process.
    let cargs: &'static [CString] = Box::leak(cargs.into_boxed_slice());
    let ptrs: &'static mut [*mut libc::c_char] =
        Box::leak(cargs.iter().map(|c| c.as_ptr() as *mut libc::c_char).collect());
    // EAL pins the calling thread to its main lcore; the control and socket threads that this
    // thread starts later must keep the affinity they had, so it is restored below.
    // SAFETY: cpu_set_t is plain data; all-zero is an empty set.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size for the calling thread (pid 0).
    let have_mask =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) }
            == 0;
    tracing::info!("starting DPDK EAL: {}", argv[1..].join(" "));
    // SAFETY: argc/argv describe NUL-terminated strings that outlive the process.
    let r = unsafe { sys::rte_eal_init(ptrs.len() as i32, ptrs.as_mut_ptr()) };
    let e = errno();
    if have_mask {
        // SAFETY: restores the mask read above for the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mask) };
    }
    if r < 0 {
        let mut msg = format!(
            "DPDK's EAL refused to start with `{}`: {} (see EAL's messages above)",
            argv[1..].join(" "),
            strerror(e)
        );
        let huge_wanted = !argv.iter().any(|a| a == "--no-huge");
        if huge_wanted && free_huge_pages() == 0 {
            msg.push_str(
                "; no free huge pages: reserve some (`echo 256 > /proc/sys/vm/nr_hugepages`) or \
                 run EAL without them (eal_args = [\"--no-pci\", \"--no-huge\", \"--no-shconf\"])",
            );
        }
        return Err(msg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_adds_a_vdev_or_allow_per_port() {
        let args = vec!["--no-pci".to_string(), "--no-huge".to_string()];
        let (v, w) = argv(Some(&args), &["net_ring0".into(), "0000:3b:00.0".into()]);
        assert_eq!(
            v,
            ["ferroplane", "--no-pci", "--no-huge", "--vdev", "net_ring0", "-a", "0000:3b:00.0"]
        );
        let (v, _) = argv(Some(&args), &["net_af_packet0,iface=eth0".into()]);
        assert_eq!(v[4], "net_af_packet0,iface=eth0,blocksz=233472,framesz=1824");
        let own = "net_af_packet0,iface=eth0,blocksz=4096,framesz=1024";
        let (v, _) = argv(Some(&args), &[own.into()]);
        assert_eq!(v[4], own);
        assert!(w.is_none());
        let (v, _) = argv(None, &[]);
        assert!(v[1..] == *DEFAULT_ARGS || v[1..] == *NO_HUGE_ARGS, "{v:?}");
    }
}
