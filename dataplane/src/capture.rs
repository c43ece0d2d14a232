//! Live capture of one port to a pcap file: the daemon side of
//! `fpctl capture start PORT FILE [--count N] [--direction rx|tx|both]`.
//!
//! Workers copy the frames of the captured port into buffers allocated once, in
//! [`Capture::new`]; a writer thread started by [`Capture::start`] writes them to a
//! nanosecond-resolution Ethernet pcap that Wireshark and tshark open.
//!
//! # The worker side
//!
//! A worker checks [`Capture::active`] once per burst (one relaxed atomic load, on a cache line
//! of its own that nothing writes while a capture runs) and calls [`Capture::offer`] for each
//! frame of the captured port and direction. `offer` never allocates, locks, makes a system call
//! or blocks, and cannot panic: it moves a pre-allocated boxed buffer (a pointer) from the
//! `free` ring to the `filled` ring, both bounded lock-free `ArrayQueue`s, and copies at most
//! [`SNAP`] bytes into it. No buffer free means a counted drop. Every buffer exists from `new`
//! on and is always in exactly one place — the free ring, the filled ring, or the hands of the
//! one thread that popped it — and both rings hold all of them, so a push cannot fail (and
//! nothing is ever freed on the fast path either).
//!
//! # Stopping without losing frames
//!
//! A worker counts itself in `inflight` before it looks at the state and out after it queued its
//! frame. Whoever deactivates the capture (`stop`, the worker that queued the last of `count`
//! frames, or the writer after a write error) stores 0 in the state word; the writer then waits
//! for `inflight` to reach 0 and drains the filled ring a last time before it finishes the file.
//! Both sides use sequentially consistent operations on the two words, so either a worker sees
//! the capture inactive, or the writer sees the worker in flight: every `offer` that returned
//! true is in the file, and no frame of a finished capture can leak into the next one.
//!
//! # Timestamps
//!
//! Workers pass nanoseconds of a monotonic clock. The capture reads that same clock, through the
//! `Fn() -> u64` given to [`Capture::with_clock`], once at [`Capture::start`], together with
//! `SystemTime::now`; the difference is added to every frame's time on the writer thread, so the
//! file holds wall-clock times while the fast path keeps its cheap monotonic stamps (and a
//! wall-clock step during the capture does not reorder frames). [`Capture::new`] assumes
//! `CLOCK_MONOTONIC` nanoseconds; a process whose workers count from another origin — such as
//! `runtime::Clock`, which counts from its creation — must hand that clock to `with_clock`.

use std::fmt;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;

use crate::pcap::CaptureWriter;

/// Bytes kept of each frame; longer frames are truncated in the file but keep their original
/// length.
pub const SNAP: usize = 2048;

/// How long the writer sleeps when it finds nothing queued.
const WRITER_IDLE: Duration = Duration::from_millis(1);

/// Which frames of a port a capture takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received on the port.
    Rx,
    /// Transmitted on the port.
    Tx,
    Both,
}

impl Direction {
    /// Whether a capture of direction `self` takes a frame travelling in direction `frame`.
    #[inline]
    pub fn covers(self, frame: Direction) -> bool {
        self == Direction::Both || frame == Direction::Both || self == frame
    }

    fn code(self) -> u32 {
        match self {
            Direction::Rx => 0,
            Direction::Tx => 1,
            Direction::Both => 2,
        }
    }

    fn from_code(code: u32) -> Direction {
        match code {
            0 => Direction::Rx,
            1 => Direction::Tx,
            _ => Direction::Both,
        }
    }
}

impl FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Direction, String> {
        match s.to_ascii_lowercase().as_str() {
            "rx" => Ok(Direction::Rx),
            "tx" => Ok(Direction::Tx),
            "both" => Ok(Direction::Both),
            _ => Err(format!("unknown capture direction `{s}`: expected rx, tx or both")),
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Rx => "rx",
            Direction::Tx => "tx",
            Direction::Both => "both",
        })
    }
}

/// A capture's state, for `fpctl capture`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSummary {
    pub port: String,
    pub file: PathBuf,
    pub direction: Direction,
    /// Frames in the file.
    pub written: u64,
    /// Frames of the captured port and direction that are not in the file: no buffer was free,
    /// or the file could not be written.
    pub dropped: u64,
    /// False once the capture has stopped, by itself (count reached, write error) or by `stop`.
    pub running: bool,
}

/// One frame on its way to the file.
struct Slot {
    /// Monotonic, as the worker passed it.
    timestamp_ns: u64,
    /// Bytes of `data` used (at most [`SNAP`]).
    len: u32,
    /// The frame's length on the wire.
    orig_len: u32,
    data: [u8; SNAP],
}

/// Keeps a value on cache lines of its own (128 bytes: adjacent-line prefetch pairs lines).
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What workers write for each frame they capture.
struct Shared {
    /// Workers inside [`Capture::offer`].
    inflight: AtomicUsize,
    /// Frames taken by workers since `start` (counted against `limit`).
    accepted: AtomicU64,
    dropped: AtomicU64,
}

/// The state word: 0 when idle, otherwise `ACTIVE | direction << 16 | port`.
const ACTIVE: u32 = 1 << 31;

fn encode(port: u16, dir: Direction) -> u32 {
    ACTIVE | dir.code() << 16 | port as u32
}

#[inline]
fn decode(word: u32) -> Option<(u16, Direction)> {
    if word & ACTIVE == 0 {
        return None;
    }
    Some((word as u16, Direction::from_code((word >> 16) & 0x3)))
}

/// What `start` recorded, for `status` and `stop`.
struct Session {
    port_name: String,
    file: PathBuf,
    direction: Direction,
    writer: Option<JoinHandle<Result<(), String>>>,
}

/// Shared between the workers and the writer; workers hold an `Arc` and check
/// [`active`](Capture::active) once per burst (one relaxed atomic load).
///
/// Stop a running capture (`stop`) before the process exits: the writer thread holds an `Arc`
/// of its own and only finishes the file when told to, or when its count is reached.
pub struct Capture {
    /// Read by every worker on every burst; written only by start and stop.
    state: Padded<AtomicU32>,
    /// Written by workers for every captured frame.
    shared: Padded<Shared>,
    free: ArrayQueue<Box<Slot>>,
    filled: ArrayQueue<Box<Slot>>,
    /// Frames to capture (`u64::MAX`: no limit). Set before the state word is published.
    limit: AtomicU64,
    written: AtomicU64,
    /// Set by `stop` for the writer.
    stop_requested: AtomicBool,
    /// From `start` until the writer has finished the file.
    running: AtomicBool,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
    session: Mutex<Option<Session>>,
    /// Tests hold the writer back to fill the ring deterministically.
    #[cfg(test)]
    hold_writer: AtomicBool,
}

/// Nanoseconds of `CLOCK_MONOTONIC` (the clock of `std::time::Instant` on Linux).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

impl Capture {
    /// Pre-allocates `slots` buffers of [`SNAP`] bytes each (at least one). Frame times are
    /// taken as `CLOCK_MONOTONIC` nanoseconds; see [`with_clock`](Capture::with_clock).
    pub fn new(slots: usize) -> Capture {
        Capture::with_clock(slots, monotonic_ns)
    }

    /// Like [`new`](Capture::new), for workers whose timestamps come from `clock` (nanoseconds
    /// of a monotonic clock with any origin), e.g. `move || clock.now_ns()` for the runtime's
    /// `Clock`. `clock` is read once per `start`, never on the fast path.
    pub fn with_clock(slots: usize, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Capture {
        let slots = slots.max(1);
        let free = ArrayQueue::new(slots);
        for _ in 0..slots {
            let slot = Box::new(Slot { timestamp_ns: 0, len: 0, orig_len: 0, data: [0; SNAP] });
            // Cannot fail: the ring holds `slots` buffers.
            let _ = free.push(slot);
        }
        Capture {
            state: Padded(AtomicU32::new(0)),
            shared: Padded(Shared {
                inflight: AtomicUsize::new(0),
                accepted: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
            free,
            filled: ArrayQueue::new(slots),
            limit: AtomicU64::new(u64::MAX),
            written: AtomicU64::new(0),
            stop_requested: AtomicBool::new(false),
            running: AtomicBool::new(false),
            clock: Box::new(clock),
            session: Mutex::new(None),
            #[cfg(test)]
            hold_writer: AtomicBool::new(false),
        }
    }

    /// Cheap check for workers (one relaxed load): the captured port id and direction, if a
    /// capture is running.
    #[inline]
    pub fn active(&self) -> Option<(u16, Direction)> {
        decode(self.state.load(Ordering::Relaxed))
    }

    /// Called by a worker for a frame of port `port` travelling in direction `dir` (Rx or Tx):
    /// copies up to [`SNAP`] bytes into a free buffer and queues it for the writer. Returns true
    /// if the frame will be in the file. Returns false, and counts a drop, if no buffer is free;
    /// returns false without counting if no capture of this port and direction runs, which
    /// includes the frames of a burst offered after the requested count was reached (the frame
    /// that reaches it deactivates the capture). Never allocates, locks, blocks or panics.
    #[inline]
    pub fn offer(&self, port: u16, dir: Direction, timestamp_ns: u64, frame: &[u8]) -> bool {
        self.shared.inflight.fetch_add(1, Ordering::SeqCst);
        let queued = self.offer_inner(port, dir, timestamp_ns, frame);
        self.shared.inflight.fetch_sub(1, Ordering::SeqCst);
        queued
    }

    #[inline]
    fn offer_inner(&self, port: u16, dir: Direction, timestamp_ns: u64, frame: &[u8]) -> bool {
        let word = self.state.load(Ordering::SeqCst);
        match decode(word) {
            Some((p, want)) if p == port && want.covers(dir) => {}
            _ => return false,
        }
        let Some(mut slot) = self.free.pop() else {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let limit = self.limit.load(Ordering::Relaxed);
        let n = self.shared.accepted.fetch_add(1, Ordering::Relaxed);
        if n >= limit {
            // Another worker took the last one; it deactivates (or has deactivated) the capture.
            let _ = self.free.push(slot);
            return false;
        }
        let len = frame.len().min(SNAP);
        if let (Some(dst), Some(src)) = (slot.data.get_mut(..len), frame.get(..len)) {
            dst.copy_from_slice(src);
        }
        slot.len = len as u32;
        slot.orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        slot.timestamp_ns = timestamp_ns;
        if let Err(slot) = self.filled.push(slot) {
            // Cannot happen (the filled ring holds every buffer); never lose the buffer anyway.
            let _ = self.free.push(slot);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if n + 1 == limit {
            // The last frame asked for: stop taking frames; the writer finishes the file. Only
            // this capture's word is cleared (a new capture cannot start while we are in flight).
            let _ = self.state.compare_exchange(word, 0, Ordering::SeqCst, Ordering::Relaxed);
        }
        true
    }

    /// Starts capturing the frames of port `port` (named `port_name` in the status) travelling
    /// in direction `dir` to a new pcap file at `path` (nanosecond timestamps, Ethernet),
    /// stopping by itself after `count` frames if given. Errors if a capture is already running,
    /// `count` is 0, or the file cannot be created. A capture that stopped by itself and was not
    /// collected by `stop` is replaced.
    pub fn start(
        self: &Arc<Self>,
        port: u16,
        port_name: &str,
        path: &Path,
        count: Option<u64>,
        dir: Direction,
    ) -> Result<(), String> {
        if count == Some(0) {
            return Err("capture count must be at least 1".into());
        }
        let mut session = self.lock_session();
        if let Some(s) = session.as_ref() {
            if self.running.load(Ordering::Acquire) {
                return Err(format!(
                    "a capture is already running (port {}, direction {}, file {}); stop it first",
                    s.port_name,
                    s.direction,
                    s.file.display()
                ));
            }
        }
        if let Some(old) = session.take() {
            if let Some(h) = old.writer {
                let _ = h.join();
            }
        }
        let writer = CaptureWriter::create(path)
            .map_err(|e| format!("cannot create capture file {}: {}", e.path, e.message))?;

        // The previous writer drained everything after the last worker left; make sure anyway
        // that nothing of an earlier capture reaches this file.
        while let Some(slot) = self.filled.pop() {
            let _ = self.free.push(slot);
        }
        self.shared.accepted.store(0, Ordering::Relaxed);
        self.shared.dropped.store(0, Ordering::Relaxed);
        self.written.store(0, Ordering::Relaxed);
        self.limit.store(count.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.stop_requested.store(false, Ordering::SeqCst);
        self.running.store(true, Ordering::Release);

        let mono = (self.clock)();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let offset = wall as i128 - mono as i128;

        // Published before the writer runs: the writer takes state 0 as "stopped".
        self.state.store(encode(port, dir), Ordering::SeqCst);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("fp-capture".into())
            .spawn(move || me.write_loop(writer, offset));
        match spawned {
            Ok(h) => {
                *session = Some(Session {
                    port_name: port_name.to_string(),
                    file: path.to_path_buf(),
                    direction: dir,
                    writer: Some(h),
                });
                Ok(())
            }
            Err(e) => {
                self.state.store(0, Ordering::SeqCst);
                self.quiesce();
                while let Some(slot) = self.filled.pop() {
                    let _ = self.free.push(slot);
                }
                self.running.store(false, Ordering::Release);
                Err(format!("cannot start the capture writer thread: {e}"))
            }
        }
    }

    /// Stops the capture: deactivates it, lets the writer drain everything queued, finishes the
    /// file and returns the final summary. Also collects a capture that stopped by itself.
    /// Errors if no capture was started, or if writing the file failed.
    pub fn stop(&self) -> Result<CaptureSummary, String> {
        let mut session = self.lock_session();
        let Some(mut s) = session.take() else {
            return Err("no capture is running".into());
        };
        self.state.store(0, Ordering::SeqCst);
        self.stop_requested.store(true, Ordering::SeqCst);
        let result = match s.writer.take() {
            Some(h) => {
                h.thread().unpark();
                h.join().unwrap_or_else(|_| Err("the capture writer thread panicked".into()))
            }
            None => Ok(()),
        };
        self.running.store(false, Ordering::Release);
        let summary = self.summary(&s);
        match result {
            Ok(()) => Ok(summary),
            Err(e) => Err(format!(
                "capture of port {} to {} failed after {} frames: {e}",
                summary.port,
                summary.file.display(),
                summary.written
            )),
        }
    }

    /// The current capture — running, or stopped by itself and not yet collected by `stop` —
    /// for `fpctl capture`; None if there is none.
    pub fn status(&self) -> Option<CaptureSummary> {
        let session = self.lock_session();
        session.as_ref().map(|s| self.summary(s))
    }

    fn summary(&self, s: &Session) -> CaptureSummary {
        CaptureSummary {
            port: s.port_name.clone(),
            file: s.file.clone(),
            direction: s.direction,
            written: self.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            running: self.running.load(Ordering::Acquire),
        }
    }

    fn lock_session(&self) -> MutexGuard<'_, Option<Session>> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until no worker is inside `offer`. Called after the state word went to 0, so it
    /// only waits for workers that saw the capture active, for the time of one frame copy.
    fn quiesce(&self) {
        while self.shared.inflight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    }

    /// The writer thread: writes queued frames until the capture is deactivated, then drains
    /// what the last workers queued and finishes the file.
    fn write_loop(self: Arc<Self>, mut w: CaptureWriter, offset: i128) -> Result<(), String> {
        let mut error = None;
        loop {
            let stopping = self.stop_requested.load(Ordering::SeqCst)
                || self.state.load(Ordering::SeqCst) == 0;
            if stopping {
                self.state.store(0, Ordering::SeqCst);
                self.quiesce();
                self.drain(&mut w, offset, &mut error);
                break;
            }
            if self.held() || self.drain(&mut w, offset, &mut error) == 0 {
                std::thread::park_timeout(WRITER_IDLE);
            }
        }
        let finished = w.finish();
        if error.is_none() {
            error = finished.err().map(|e| e.to_string());
        }
        self.running.store(false, Ordering::Release);
        error.map_or(Ok(()), Err)
    }

    #[cfg(test)]
    fn held(&self) -> bool {
        self.hold_writer.load(Ordering::SeqCst)
    }

    #[cfg(not(test))]
    fn held(&self) -> bool {
        false
    }

    /// Writes every queued frame and returns the buffers; after a write error, deactivates the
    /// capture and counts the rest as dropped. Returns how many frames it took.
    fn drain(&self, w: &mut CaptureWriter, offset: i128, error: &mut Option<String>) -> usize {
        let mut n = 0;
        while let Some(slot) = self.filled.pop() {
            n += 1;
            if error.is_none() {
                let ts = (slot.timestamp_ns as i128 + offset).clamp(0, u64::MAX as i128) as u64;
                let data = &slot.data[..(slot.len as usize).min(SNAP)];
                match w.write_truncated(ts, data, slot.orig_len) {
                    Ok(()) => {
                        self.written.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *error = Some(e.to_string());
                        self.state.store(0, Ordering::SeqCst);
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            } else {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
            let _ = self.free.push(slot);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// A fresh directory for one test.
    fn test_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fp-capture-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// `tshark -r FILE -T fields -e ...`, one Vec of fields per frame. Fails (never skips) if
    /// tshark is missing.
    fn tshark(path: &Path, fields: &[&str]) -> Vec<Vec<String>> {
        let mut cmd = Command::new("tshark");
        cmd.arg("-r").arg(path).args(["-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd
            .output()
            .expect("tshark is required by these tests and could not be run (install tshark)");
        assert!(
            out.status.success(),
            "tshark -r {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// frame.len and frame.cap_len of every frame.
    fn lengths(path: &Path) -> Vec<(usize, usize)> {
        tshark(path, &["frame.len", "frame.cap_len"])
            .into_iter()
            .map(|f| (f[0].parse().unwrap(), f[1].parse().unwrap()))
            .collect()
    }

    fn frame(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn wait_stopped(c: &Capture) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.status().is_some_and(|s| s.running) {
            assert!(Instant::now() < deadline, "capture did not stop by itself");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn direction_parses_and_displays() {
        for (s, d) in [("rx", Direction::Rx), ("tx", Direction::Tx), ("both", Direction::Both)] {
            assert_eq!(s.parse::<Direction>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("RX".parse::<Direction>().unwrap(), Direction::Rx);
        let e = "in".parse::<Direction>().unwrap_err();
        assert!(e.contains("rx, tx or both"), "{e}");
        assert!(Direction::Both.covers(Direction::Rx) && Direction::Both.covers(Direction::Tx));
        assert!(Direction::Rx.covers(Direction::Rx) && !Direction::Rx.covers(Direction::Tx));
        assert!(Direction::Tx.covers(Direction::Tx) && !Direction::Tx.covers(Direction::Rx));
    }

    #[test]
    fn state_word_round_trips() {
        for port in [0u16, 1, 7, 0xffff] {
            for dir in [Direction::Rx, Direction::Tx, Direction::Both] {
                assert_eq!(decode(encode(port, dir)), Some((port, dir)));
            }
        }
        assert_eq!(decode(0), None);
    }

    #[test]
    fn offer_stop_round_trip_is_read_by_tshark() {
        let dir = test_dir("round-trip");
        let path = dir.join("out.pcap");
        let c = Arc::new(Capture::new(16));
        assert_eq!(c.active(), None);
        assert!(!c.offer(3, Direction::Rx, 1, &frame(60, 0)), "no capture runs yet");
        c.start(3, "eth3", &path, None, Direction::Both).unwrap();
        assert_eq!(c.active(), Some((3, Direction::Both)));

        let frames = [frame(60, 1), frame(1514, 2), frame(3000, 3), frame(SNAP, 4)];
        let t0 = monotonic_ns();
        for (i, f) in frames.iter().enumerate() {
            let dir = if i % 2 == 0 { Direction::Rx } else { Direction::Tx };
            assert!(c.offer(3, dir, t0 + i as u64, f));
        }
        assert!(!c.offer(4, Direction::Rx, t0, &frame(60, 9)), "another port");
        let running = c.status().unwrap();
        assert!(running.running);
        assert_eq!(running.port, "eth3");

        let s = c.stop().unwrap();
        assert_eq!(
            s,
            CaptureSummary {
                port: "eth3".into(),
                file: path.clone(),
                direction: Direction::Both,
                written: 4,
                dropped: 0,
                running: false,
            }
        );
        assert_eq!(c.active(), None);
        assert_eq!(c.status(), None);
        assert!(c.stop().unwrap_err().contains("no capture"));

        assert_eq!(lengths(&path), vec![(60, 60), (1514, 1514), (3000, SNAP), (SNAP, SNAP)]);
        // Our own reader agrees on the bytes kept.
        let back = crate::pcap::read_capture(&path).unwrap();
        let kept: Vec<Vec<u8>> = frames.iter().map(|f| f[..f.len().min(SNAP)].to_vec()).collect();
        assert_eq!(back.iter().map(|f| f.data.clone()).collect::<Vec<_>>(), kept);
        // Wall-clock times, nanoseconds apart as offered.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        for (i, f) in back.iter().enumerate() {
            assert!(f.timestamp_ns.abs_diff(now) < 60_000_000_000, "{} vs {now}", f.timestamp_ns);
            assert_eq!(f.timestamp_ns - back[0].timestamp_ns, i as u64);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timestamps_follow_the_given_clock() {
        let dir = test_dir("clock");
        let path = dir.join("out.pcap");
        // A worker clock that reads 5 s at start.
        let c = Arc::new(Capture::with_clock(4, || 5_000_000_000));
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        c.start(0, "p0", &path, None, Direction::Rx).unwrap();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert!(c.offer(0, Direction::Rx, 5_000_000_000, &frame(64, 0)));
        assert!(c.offer(0, Direction::Rx, 6_000_000_007, &frame(64, 1)));
        c.stop().unwrap();

        let epoch: Vec<u64> = tshark(&path, &["frame.time_epoch"])
            .into_iter()
            .map(|f| {
                let (s, ns) = f[0].split_once('.').unwrap();
                assert_eq!(ns.len(), 9, "nanosecond resolution: {}", f[0]);
                s.parse::<u64>().unwrap() * 1_000_000_000 + ns.parse::<u64>().unwrap()
            })
            .collect();
        assert_eq!(epoch.len(), 2);
        assert!(before <= epoch[0] && epoch[0] <= after, "{before} <= {} <= {after}", epoch[0]);
        assert_eq!(epoch[1] - epoch[0], 1_000_000_007);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn count_limit_stops_the_capture() {
        let dir = test_dir("count");
        let path = dir.join("out.pcap");
        let c = Arc::new(Capture::new(16));
        c.start(1, "eth1", &path, Some(3), Direction::Both).unwrap();
        let taken: Vec<bool> =
            (0..6).map(|i| c.offer(1, Direction::Rx, i, &frame(100, 0))).collect();
        assert_eq!(taken, [true, true, true, false, false, false]);
        assert_eq!(c.active(), None, "the third frame deactivates the capture");
        wait_stopped(&c);
        let s = c.status().unwrap();
        assert!(!s.running);
        assert_eq!((s.written, s.dropped), (3, 0));
        // A later stop collects it.
        let s = c.stop().unwrap();
        assert_eq!((s.written, s.dropped, s.running), (3, 0, false));
        assert_eq!(lengths(&path), vec![(100, 100); 3]);

        // A capture that stopped by itself does not block the next one.
        c.start(1, "eth1", &path, Some(1), Direction::Rx).unwrap();
        assert!(c.offer(1, Direction::Rx, 0, &frame(70, 0)));
        wait_stopped(&c);
        c.start(1, "eth1", &path, Some(2), Direction::Rx).unwrap();
        assert!(c.offer(1, Direction::Rx, 0, &frame(80, 0)));
        assert!(c.offer(1, Direction::Rx, 0, &frame(81, 0)));
        wait_stopped(&c);
        assert_eq!(c.stop().unwrap().written, 2);
        assert_eq!(lengths(&path), vec![(80, 80), (81, 81)]);
        assert!(c.start(1, "eth1", &path, Some(0), Direction::Rx).unwrap_err().contains("count"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn direction_filter() {
        let dir = test_dir("direction");
        let c = Arc::new(Capture::new(16));
        let rx = dir.join("rx.pcap");
        c.start(2, "eth2", &rx, None, Direction::Rx).unwrap();
        assert_eq!(c.active(), Some((2, Direction::Rx)));
        assert!(!c.offer(2, Direction::Tx, 0, &frame(90, 0)));
        assert!(c.offer(2, Direction::Rx, 1, &frame(91, 0)));
        assert!(!c.offer(2, Direction::Tx, 2, &frame(92, 0)));
        let s = c.stop().unwrap();
        assert_eq!((s.direction, s.written, s.dropped), (Direction::Rx, 1, 0));
        assert_eq!(lengths(&rx), vec![(91, 91)]);

        let tx = dir.join("tx.pcap");
        c.start(2, "eth2", &tx, None, Direction::Tx).unwrap();
        assert!(c.offer(2, Direction::Tx, 0, &frame(90, 0)));
        assert!(!c.offer(2, Direction::Rx, 1, &frame(91, 0)));
        assert!(c.offer(2, Direction::Tx, 2, &frame(92, 0)));
        assert_eq!(c.stop().unwrap().written, 2);
        assert_eq!(lengths(&tx), vec![(90, 90), (92, 92)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn full_ring_counts_drops_and_never_blocks() {
        let dir = test_dir("full");
        let path = dir.join("out.pcap");
        let c = Arc::new(Capture::new(4));
        c.hold_writer.store(true, Ordering::SeqCst);
        c.start(0, "eth0", &path, None, Direction::Both).unwrap();
        let taken: Vec<bool> =
            (0..6).map(|i| c.offer(0, Direction::Rx, i, &frame(64, 0))).collect();
        assert_eq!(taken, [true, true, true, true, false, false]);
        let t = Instant::now();
        for i in 0..100_000 {
            assert!(!c.offer(0, Direction::Tx, i, &frame(64, 0)));
        }
        assert!(t.elapsed() < Duration::from_secs(5), "offers on a full ring must not wait");
        let s = c.status().unwrap();
        assert_eq!((s.written, s.dropped, s.running), (0, 100_002, true));
        // Once the writer runs again the ring has room again.
        c.hold_writer.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !c.offer(0, Direction::Rx, 7, &frame(65, 0)) {
            assert!(Instant::now() < deadline, "the writer never freed a buffer");
            std::thread::sleep(Duration::from_millis(1));
        }
        let s = c.stop().unwrap();
        assert_eq!(s.written, 5);
        assert!(s.dropped >= 100_002);
        let lens = lengths(&path);
        assert_eq!(lens.len(), 5);
        assert_eq!(lens[4], (65, 65));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_start_while_running_is_an_error() {
        let dir = test_dir("second");
        let a = dir.join("a.pcap");
        let b = dir.join("b.pcap");
        let c = Arc::new(Capture::new(8));
        c.start(5, "eth5", &a, None, Direction::Both).unwrap();
        let e = c.start(6, "eth6", &b, None, Direction::Rx).unwrap_err();
        assert!(e.contains("already running") && e.contains("eth5"), "{e}");
        assert!(!b.exists(), "the refused capture created no file");
        // The first capture is untouched.
        assert_eq!(c.active(), Some((5, Direction::Both)));
        assert!(c.offer(5, Direction::Tx, 0, &frame(60, 0)));
        assert_eq!(c.stop().unwrap().written, 1);
        // After stop a new capture may start.
        c.start(6, "eth6", &b, None, Direction::Rx).unwrap();
        assert!(c.offer(6, Direction::Rx, 0, &frame(61, 0)));
        assert_eq!(c.stop().unwrap().written, 1);
        assert_eq!(lengths(&a), vec![(60, 60)]);
        assert_eq!(lengths(&b), vec![(61, 61)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let c = Arc::new(Capture::new(4));
        let path = Path::new("/nonexistent-ferroplane-dir/sub/out.pcap");
        let e = c.start(0, "eth0", path, None, Direction::Both).unwrap_err();
        assert!(e.starts_with("cannot create capture file"), "{e}");
        assert!(e.contains("/nonexistent-ferroplane-dir/sub/out.pcap"), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
        assert_eq!(c.active(), None);
        assert_eq!(c.status(), None);
        assert!(!c.offer(0, Direction::Rx, 0, &frame(60, 0)));
        // A directory is no file either.
        let e = c.start(0, "eth0", &std::env::temp_dir(), None, Direction::Both).unwrap_err();
        assert!(e.starts_with("cannot create capture file"), "{e}");
    }

    #[test]
    fn concurrent_workers_and_count() {
        let dir = test_dir("concurrent-count");
        let path = dir.join("out.pcap");
        // More buffers than the count: no frame is dropped, so exactly `count` are taken.
        let c = Arc::new(Capture::new(2048));
        c.start(0, "eth0", &path, Some(1000), Direction::Both).unwrap();
        let taken = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for w in 0..4u8 {
                let (c, taken) = (&c, &taken);
                s.spawn(move || {
                    let f = frame(60 + w as usize, w);
                    for i in 0..5_000 {
                        if c.offer(0, Direction::Rx, i, &f) {
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.load(Ordering::Relaxed), 1000);
        wait_stopped(&c);
        let s = c.stop().unwrap();
        assert_eq!((s.written, s.dropped), (1000, 0));
        assert_eq!(lengths(&path).len(), 1000);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stop_under_load_keeps_every_accepted_frame() {
        let dir = test_dir("stop-under-load");
        let path = dir.join("out.pcap");
        let c = Arc::new(Capture::new(64));
        c.start(0, "eth0", &path, None, Direction::Both).unwrap();
        let done = AtomicBool::new(false);
        let taken = AtomicU64::new(0);
        let offered = AtomicU64::new(0);
        let summary = std::thread::scope(|s| {
            for w in 0..3u8 {
                let (c, done, taken, offered) = (&c, &done, &taken, &offered);
                s.spawn(move || {
                    let f = frame(128, w);
                    let mut i = 0;
                    while !done.load(Ordering::Relaxed) {
                        // Like a worker: one check per burst, then the frames of the burst.
                        if c.active().is_some() {
                            for _ in 0..32 {
                                offered.fetch_add(1, Ordering::Relaxed);
                                if c.offer(0, Direction::Tx, i, &f) {
                                    taken.fetch_add(1, Ordering::Relaxed);
                                }
                                i += 1;
                            }
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(50));
            let summary = c.stop().unwrap();
            std::thread::sleep(Duration::from_millis(10));
            done.store(true, Ordering::Relaxed);
            summary
        });
        let taken = taken.load(Ordering::Relaxed);
        assert!(taken > 0);
        assert_eq!(summary.written, taken, "every accepted frame is in the file");
        assert!(summary.written + summary.dropped <= offered.load(Ordering::Relaxed));
        assert_eq!(lengths(&path).len() as u64, taken);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
