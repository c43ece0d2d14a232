//! `ferroplane replay`: the worker's pipeline and the slow path, run offline over in-memory ports,
//! pcap in and pcap out.
//!
//! Inputs are merged by timestamp (ties keep argument order, then file order) and fed in bursts of
//! at most 64 consecutive frames of one port. The pipeline clock is the frame time: neighbour timers and ICMP rate limits
//! run on it, so the same inputs always give the same outputs. After each burst the slow path
//! drains; what it sends is stamped with the time of the frame (or timer) that caused it. Frames
//! still waiting for a neighbour at the end are counted drops (`neighbour_pending_at_end`), and
//! frames for a port with no `--out` are counted (`no_tx_port`).

use std::path::PathBuf;
use std::sync::Arc;

use ferroplane_pipeline::meta::PortId;
use ferroplane_pipeline::slowpath::SlowPathCounters;
use ferroplane_pipeline::stage::BURST;
use ferroplane_pipeline::tables::Tables;
use ferroplane_pipeline::verdict::DropReason;

use crate::offline::OfflineRouter;
use crate::pcap::{read_capture, CaptureError, CaptureWriter};
use crate::worker::WorkerCounters;

/// `PORT=FILE`, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFile {
    pub port: String,
    pub path: PathBuf,
}

impl std::str::FromStr for PortFile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((p, f)) if !p.is_empty() && !f.is_empty() => {
                Ok(PortFile { port: p.to_string(), path: PathBuf::from(f) })
            }
            _ => Err(format!("`{s}` is not PORT=FILE")),
        }
    }
}

/// Why replay could not run.
#[derive(Debug)]
pub enum ReplayError {
    UnknownPort { flag: &'static str, port: String, known: Vec<String> },
    DuplicateOutput(String),
    Capture(CaptureError),
    Pool(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::UnknownPort { flag, port, known } => {
                write!(
                    f,
                    "{flag} names port `{port}`, which the configuration does not have (ports: {})",
                    known.join(", ")
                )
            }
            ReplayError::DuplicateOutput(p) => write!(f, "--out given twice for port `{p}`"),
            ReplayError::Capture(e) => write!(f, "{e}"),
            ReplayError::Pool(e) => write!(f, "cannot allocate packet buffers: {e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

impl From<CaptureError> for ReplayError {
    fn from(e: CaptureError) -> Self {
        ReplayError::Capture(e)
    }
}

/// What a replay did.
pub struct ReplayReport {
    pub port_names: Vec<String>,
    pub frames_in: usize,
    /// Frames written per port (index = port id); ports with no `--out` count 0.
    pub written: Vec<usize>,
    pub worker: Arc<WorkerCounters>,
    pub slow: Arc<SlowPathCounters>,
}

impl ReplayReport {
    /// A human summary: frames per port, every non-zero drop, punt and slow-path counter.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{:<12} {:>10} {:>10} {:>10}", "port", "rx", "tx", "written");
        // Tunnel interfaces follow the ports in `port_names` but have no port counters.
        for (i, (name, c)) in self.port_names.iter().zip(&self.worker.ports).enumerate() {
            let _ = writeln!(
                s,
                "{:<12} {:>10} {:>10} {:>10}",
                name,
                c.rx_packets.get(),
                c.tx_packets.get(),
                self.written[i]
            );
        }
        let punts: Vec<_> = self.worker.punts.iter().filter(|(_, v)| *v > 0).collect();
        if !punts.is_empty() {
            let _ = writeln!(s, "punted to the slow path:");
            for (r, v) in punts {
                let _ = writeln!(s, "  {:<28} {v}", r.name());
            }
        }
        let slow: Vec<_> = self.slow.iter().filter(|(_, v)| *v > 0).collect();
        if !slow.is_empty() {
            let _ = writeln!(s, "slow path:");
            for (n, v) in slow {
                let _ = writeln!(s, "  {n:<28} {v}");
            }
        }
        let mut drops: Vec<(DropReason, u64)> =
            self.worker.drops.iter().filter(|(_, v)| *v > 0).collect();
        for (r, v) in self.slow.drops.iter().filter(|(_, v)| *v > 0) {
            match drops.iter_mut().find(|(d, _)| *d == r) {
                Some(e) => e.1 += v,
                None => drops.push((r, v)),
            }
        }
        if drops.is_empty() {
            let _ = writeln!(s, "drops: none");
        } else {
            let _ = writeln!(s, "drops:");
            for (r, v) in drops {
                let _ = writeln!(s, "  {:<28} {v}", r.name());
            }
        }
        s
    }
}

/// Runs the pipeline over `inputs`, writing `outputs`.
pub fn replay(
    tables: Tables,
    inputs: &[PortFile],
    outputs: &[PortFile],
) -> Result<ReplayReport, ReplayError> {
    let names: Vec<String> = tables.ports.iter().map(|p| p.name.clone()).collect();
    let port_of = |flag: &'static str, name: &str| {
        names.iter().position(|n| n == name).ok_or_else(|| ReplayError::UnknownPort {
            flag,
            port: name.to_string(),
            known: names.clone(),
        })
    };
    let mut writers: Vec<Option<CaptureWriter>> = names.iter().map(|_| None).collect();
    for o in outputs {
        let i = port_of("--out", &o.port)?;
        if writers[i].is_some() {
            return Err(ReplayError::DuplicateOutput(o.port.clone()));
        }
        writers[i] = Some(CaptureWriter::create(&o.path)?);
    }
    // Merge: (time, argument order, file order).
    let mut frames = Vec::new();
    for (arg, i) in inputs.iter().enumerate() {
        let port = port_of("--in", &i.port)?;
        for (seq, f) in read_capture(&i.path)?.into_iter().enumerate() {
            frames.push((f.timestamp_ns, arg, seq, port, f.data));
        }
    }
    frames.sort_by_key(|f| (f.0, f.1, f.2));

    let mut router = OfflineRouter::new(tables).map_err(|e| ReplayError::Pool(e.to_string()))?;
    let counters = router.worker_counters();
    let mut written = vec![0usize; names.len()];
    let frames_in = frames.len();
    // A burst is a run of consecutive frames (in merged order) of one port, at most BURST long:
    // the worker then sees them exactly in capture order, and a reply from one port is never
    // processed before an earlier frame of another.
    let mut start = 0;
    while start < frames.len() {
        let port = frames[start].3;
        let mut end = start + 1;
        while end < frames.len() && end - start < BURST && frames[end].3 == port {
            end += 1;
        }
        let burst: Vec<(PortId, &[u8], u64)> = frames[start..end]
            .iter()
            .map(|(ts, _, _, port, data)| (*port as PortId, &data[..], *ts))
            .collect();
        router.run_burst(frames[start].0, &burst);
        collect(&mut router, &mut writers, &mut written, &counters)?;
        start = end;
    }
    router.finish(frames.last().map_or(0, |f| f.0));
    collect(&mut router, &mut writers, &mut written, &counters)?;
    for w in writers.into_iter().flatten() {
        w.finish()?;
    }
    Ok(ReplayReport {
        port_names: names,
        frames_in,
        written,
        worker: counters,
        slow: router.slow_counters(),
    })
}

fn collect(
    router: &mut OfflineRouter,
    writers: &mut [Option<CaptureWriter>],
    written: &mut [usize],
    counters: &WorkerCounters,
) -> Result<(), CaptureError> {
    // Forwarded frames keep their receive time and slow-path frames take their trigger's time:
    // write each burst's output in time order (stable, so equal times keep transmit order).
    let mut out: Vec<(u64, PortId, Vec<u8>)> = Vec::new();
    router.drain_tx(|port, frame, ts| out.push((ts, port, frame.to_vec())));
    out.sort_by_key(|o| o.0);
    for (ts, port, frame) in out {
        match &mut writers[port as usize] {
            Some(w) => {
                w.write(ts, &frame)?;
                written[port as usize] += 1;
            }
            // Replay runs the worker on this thread, so this is still its counters' only writer.
            None => counters.drops.inc(DropReason::NoTxPort),
        }
    }
    Ok(())
}
