//! The live process: worker threads pinned to their cores, the control thread serving the slow
//! path, signal handling and shutdown.
//!
//! Worker `w` of `W` receives from queues `q` with `q % W == w` of every port, and owns a port
//! handle (an AF_XDP socket) for each, through which it also transmits. The control thread pops
//! the punt ring of every worker, runs the slow path, and hands each output back to the worker
//! whose pool the buffer belongs to (frames it built go to the worker that owns the egress port's
//! first queue). A full reply ring keeps the output in a backlog for the next turn: buffers are
//! never lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferroplane_hugepages::Policy;
use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::pool::Pool;
use ferroplane_pipeline::slowpath::{Output, SlowPath, SlowPathConfig, SlowPathCounters};
use ferroplane_pipeline::stage::Pipeline;
use ferroplane_pipeline::tables::TableHandle;

use ferroplane_tunnels::counters::TunnelTotals;
use ferroplane_tunnels::{LearnQueue, TunnelCounters};

use crate::capture::Capture;
use crate::config::Poll;
use crate::control::{ControlPlane, Staged};
use crate::port::Port;
use crate::trace::Trace;
use crate::worker::{Queues, Reply, Worker, WorkerCounters};

/// Control-socket requests waiting for the control thread; more get `busy`.
pub const COMMAND_QUEUE: usize = 4096;
/// Requests staged into one snapshot publish at most.
const MAX_BATCH: usize = 4096;

/// A control-socket request for the control thread, with where to send its reply.
pub struct Command {
    pub request: ferroplane_ctl::Request,
    pub reply: SyncSender<ferroplane_ctl::Reply>,
}

/// MACs learned on multipoint tunnels waiting for the control thread.
const LEARN_QUEUE: usize = 1024;
/// Buffers per worker pool.
pub const POOL_FRAMES: usize = 8192;
/// Frames a capture holds between the workers and its writer thread.
const CAPTURE_SLOTS: usize = 4096;
/// Empty polls before an adaptive worker sleeps.
const ADAPTIVE_SPIN: u32 = 256;
/// Longest an adaptive worker sleeps before polling again (slow-path replies wait this long at
/// most).
const ADAPTIVE_SLEEP_MS: i32 = 1;

/// A monotonic nanosecond clock shared by all threads of the process.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What a running process exposes to the control socket and to shutdown.
pub struct Running {
    pub stop: Arc<AtomicBool>,
    pub tables: Arc<TableHandle>,
    pub workers: Vec<Arc<WorkerCounters>>,
    /// Each worker's per-tunnel counters, read per tunnel interface.
    pub tunnels: Arc<TunnelTotals>,
    pub slow: Arc<SlowPathCounters>,
    /// Requests for the control thread (route, neighbour, config changes and reads).
    pub commands: SyncSender<Command>,
    pub trace: Arc<Trace>,
    pub capture: Arc<Capture>,
    threads: Vec<(String, JoinHandle<()>)>,
}

/// Why the process stopped abnormally.
#[derive(Debug)]
pub struct ThreadFailure {
    pub thread: String,
    pub message: String,
}

impl std::fmt::Display for ThreadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "thread `{}` failed: {}", self.thread, self.message)
    }
}

impl Running {
    /// True while every thread is alive.
    pub fn healthy(&self) -> bool {
        self.threads.iter().all(|(_, h)| !h.is_finished())
    }

    /// Stops every thread and joins them; reports the first that panicked.
    pub fn shutdown(self) -> Result<(), ThreadFailure> {
        self.stop.store(true, Ordering::SeqCst);
        let mut first = None;
        for (name, h) in self.threads {
            if let Err(e) = h.join() {
                let message = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                first.get_or_insert(ThreadFailure { thread: name, message });
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// One worker's ports (indexed by port id; each handles one queue of that port) and which of
/// them it receives from.
pub struct WorkerPorts {
    pub core: Option<usize>,
    pub ports: Vec<Box<dyn Port>>,
    pub rx_ports: Vec<PortId>,
    /// The worker's pool, when its ports were built over it (DPDK queues' mempools take their
    /// frames from it); `None`: a pool of [`POOL_FRAMES`] is made here.
    pub pool: Option<Pool>,
}

/// Starts the workers and the control thread.
pub fn start(
    tables: TableHandle,
    workers: Vec<WorkerPorts>,
    poll: Poll,
    control_core: Option<usize>,
    mut control: ControlPlane,
) -> Result<Running, String> {
    let tables = Arc::new(tables);
    let trace = Arc::new(Trace::new());
    let clock = Clock::new();
    // Workers stamp frames with this clock; the capture maps it to wall time for the file.
    let capture = Arc::new(Capture::with_clock(CAPTURE_SLOTS, move || clock.now_ns()));
    let (commands, command_rx) = std::sync::mpsc::sync_channel(COMMAND_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let mut all_queues = Vec::new();
    let mut counters = Vec::new();
    // Port -> worker for frames the slow path builds.
    let mut port_owner: Vec<u8> = Vec::new();
    let learn = Arc::new(LearnQueue::new(LEARN_QUEUE));
    let mut all_tunnel_counters = Vec::new();
    for (w, wp) in workers.into_iter().enumerate() {
        let pool = match wp.pool {
            Some(p) => p,
            None => Pool::new(POOL_FRAMES, Policy::PreferHuge)
                .map_err(|e| format!("worker {w}: {e}"))?,
        };
        let queues = Arc::new(Queues::new(1024));
        let tunnel_counters = Arc::new(TunnelCounters::default());
        all_tunnel_counters.push(tunnel_counters.clone());
        for _ in port_owner.len()..wp.ports.len() {
            port_owner.push(w as u8);
        }
        let worker = Worker::new(
            pool,
            wp.ports,
            wp.rx_ports,
            Pipeline::new(crate::assemble::stages_counted(
                Some(learn.clone()),
                tunnel_counters.clone(),
            )),
            tables.clone(),
            queues.clone(),
        )
        .with_id(w as u8)
        .with_observers(trace.clone(), capture.clone())
        .with_tunnel_counters(tunnel_counters);
        counters.push(worker.counters());
        all_queues.push(queues);
        let stop = stop.clone();
        let core = wp.core;
        let name = format!("fp-worker-{w}");
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || worker_loop(worker, core, poll, stop, clock))
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        threads.push((name, h));
    }
    let tunnel_totals = Arc::new(TunnelTotals::new(all_tunnel_counters));
    control.count_tunnels(tunnel_totals.clone());
    let slow = SlowPath::new(&tables.load(), SlowPathConfig::default());
    let slow_counters = slow.counters();
    {
        let stop = stop.clone();
        let tables = tables.clone();
        let h = std::thread::Builder::new()
            .name("fp-control".into())
            .spawn(move || {
                let c = Control { plane: control, commands: command_rx, learn };
                control_loop(slow, c, tables, all_queues, port_owner, control_core, stop, clock)
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        threads.push(("fp-control".into(), h));
    }
    Ok(Running {
        stop,
        tables,
        workers: counters,
        tunnels: tunnel_totals,
        slow: slow_counters,
        commands,
        trace,
        capture,
        threads,
    })
}

fn pin(core: Option<usize>, what: &str) {
    if let Some(id) = core {
        if core_affinity::set_for_current(core_affinity::CoreId { id }) {
            tracing::info!("{what} pinned to core {id}");
        } else {
            tracing::warn!("{what}: cannot pin to core {id}; running unpinned");
        }
    }
}

fn worker_loop<P: Port>(
    mut worker: Worker<P>,
    core: Option<usize>,
    poll: Poll,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    pin(core, &format!("worker {}", worker.id()));
    let counters = worker.counters();
    let fds = worker.wait_fds();
    let mut pollfds: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    let mut empty_run = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let t0 = clock.now_ns();
        let n = worker.poll(t0);
        if n > 0 {
            counters.busy_ns.add(clock.now_ns() - t0);
            empty_run = 0;
            continue;
        }
        empty_run += 1;
        if poll == Poll::Adaptive && empty_run >= ADAPTIVE_SPIN {
            // VPP's adaptive mode: after a run of empty polls, sleep until a port has frames
            // (need_wakeup lets the kernel wake us) or a short timeout for slow-path replies.
            if pollfds.is_empty() {
                std::thread::sleep(Duration::from_millis(ADAPTIVE_SLEEP_MS as u64));
            } else {
                // SAFETY: pollfds is a valid array of initialised pollfd structs.
                unsafe {
                    libc::poll(
                        pollfds.as_mut_ptr(),
                        pollfds.len() as libc::nfds_t,
                        ADAPTIVE_SLEEP_MS,
                    )
                };
            }
        } else {
            std::hint::spin_loop();
        }
    }
    worker.flush_tx();
}

/// The control plane's state and its request queue, owned by the control thread.
struct Control {
    plane: ControlPlane,
    commands: Receiver<Command>,
    /// MACs the workers' decap stages learned on multipoint tunnels.
    learn: Arc<LearnQueue>,
}

impl Control {
    /// Serves the queued control-socket requests as one batch: stages them in order, publishes
    /// one snapshot, then replies (a reply means the change is live). Only what is already
    /// queued is coalesced, so no request waits for others (the 1 ms bound holds trivially).
    /// Returns whether there was any.
    fn serve(&mut self, first: Option<Command>, slow: &mut SlowPath, tables: &TableHandle) -> bool {
        let mut batch: Vec<Command> = first.into_iter().collect();
        while batch.len() < MAX_BATCH {
            match self.commands.try_recv() {
                Ok(c) => batch.push(c),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if batch.is_empty() {
            return false;
        }
        let staged: Vec<(Staged, SyncSender<ferroplane_ctl::Reply>)> =
            batch.into_iter().map(|c| (self.plane.stage(c.request, slow), c.reply)).collect();
        let failure = match self.plane.commit(slow, tables) {
            Ok(refused) => {
                for m in refused {
                    tracing::warn!("{m}");
                }
                None
            }
            Err(e) => {
                tracing::error!("publishing a table update failed: {e}");
                Some(e)
            }
        };
        for (s, to) in staged {
            let reply = match (s, &failure) {
                (Staged::Reply(r), None) => r,
                (Staged::Reply(ferroplane_ctl::Reply::Ok { .. }), Some(e)) => {
                    ferroplane_ctl::Reply::error(ferroplane_ctl::ErrorCode::Failed, e.clone())
                }
                (Staged::Reply(r), Some(_)) => r,
                (Staged::Read(req), _) => self.plane.read(req, slow),
            };
            // The client may have gone: its reply is simply dropped.
            let _ = to.try_send(reply);
        }
        true
    }
}

#[allow(clippy::too_many_arguments)]
fn control_loop(
    mut slow: SlowPath,
    mut control: Control,
    tables: Arc<TableHandle>,
    queues: Vec<Arc<Queues>>,
    port_owner: Vec<u8>,
    core: Option<usize>,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    pin(core, "control thread");
    let mut backlog: VecDeque<(usize, Reply)> = VecDeque::new();
    let mut woken_by: Option<Command> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now_ns();
        let mut work = false;
        for q in &queues {
            // Bounded per turn so one busy worker cannot starve timers or the others.
            for _ in 0..256 {
                let Some(p) = q.punt.pop() else { break };
                slow.handle_punt(now, &tables.load(), p.reason, p.buf);
                work = true;
            }
        }
        if slow.poll_timeout().is_some_and(|t| t <= now) {
            slow.handle_timeout(now, &tables.load());
        }
        work |= control.serve(woken_by.take(), &mut slow, &tables);
        while let Some(e) = control.learn.queue.pop() {
            control.plane.fdb_learn(e);
            work = true;
        }
        // Neighbours the slow path learned or forgot, MACs the tunnels learned.
        if let Err(e) = control.plane.commit(&mut slow, &tables) {
            tracing::error!("publishing a neighbour update failed: {e}");
        }
        while let Some(output) = slow.poll_output() {
            let target = match &output {
                Output::Transmit { buf, .. } | Output::Free(buf) => buf.meta.worker as usize,
                Output::Emit { port, .. } => {
                    port_owner.get(*port as usize).copied().unwrap_or(0) as usize
                }
            };
            backlog.push_back((target.min(queues.len() - 1), Reply { output, stamp_ns: now }));
        }
        let mut retry = VecDeque::new();
        while let Some((w, r)) = backlog.pop_front() {
            if let Err(r) = queues[w].reply.push(r) {
                retry.push_back((w, r));
            }
        }
        backlog = retry;
        if !work {
            // Idle: wait for a control request, or 200 us for punts and timers. A request
            // wakes the thread at once, so a client never waits out the nap.
            match control.commands.recv_timeout(Duration::from_micros(200)) {
                Ok(c) => woken_by = Some(c),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_micros(200))
                }
            }
        }
    }
}
