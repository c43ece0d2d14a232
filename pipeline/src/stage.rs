//! The stage contract.
//!
//! A stage takes a whole burst (up to [`BURST`] packets) and looks at the packets whose verdict is
//! still [`Verdict::Continue`]; it may rewrite them, set metadata, or settle their fate (forward,
//! punt, drop with a reason). Working on a vector rather than one packet keeps each stage's code
//! and tables hot in cache across the burst, as VPP's graph nodes do. Stages never allocate, lock,
//! make syscalls or panic; they read tables only through the snapshot in [`Context`].

use crate::buf::PacketBuf;
use crate::tables::Tables;
use crate::verdict::Verdict;

/// Largest burst a port hands over and a stage processes.
pub const BURST: usize = 64;

/// What a stage may read besides the packets.
pub struct Context<'a> {
    /// The table snapshot of this burst.
    pub tables: &'a Tables,
    /// The pipeline clock, nanoseconds (monotonic in the live process; frame time in replay).
    pub now_ns: u64,
}

/// One step of the pipeline.
pub trait Stage: Send {
    /// Short name, used in traces and stats.
    fn name(&self) -> &'static str;
    /// Processes every packet of `burst` whose verdict is `Continue`.
    fn process(&mut self, cx: &Context<'_>, burst: &mut [PacketBuf]);
}

/// A stage whose work on one packet does not depend on the burst's other packets (parse, input,
/// rewrite, tunnel decap and encap): it writes only the per-packet step and gets the burst loop
/// from the blanket [`Stage`] impl. The route stage is a whole-burst [`Stage`] instead, so that
/// its IPv6 lookups run as one burst lookup.
///
/// Each stays its own pass over the burst (VPP's vector model). Fusing them was measured and is
/// slower here: a generic stage running parse, decap and input (then route, rewrite and encap)
/// on each packet in one pass made the hot L3 pipeline 25-40% slower than the same stages
/// unfused, side by side in one bench binary (the fused stage was not kept), as a short loop over
/// 64 independent packets lets the CPU overlap the packets' work while one long per-packet body
/// serialises it. The worker's list is `ferroplane_dataplane::assemble::stages`.
pub trait PacketStage: Send {
    /// Short name, used in traces and stats.
    fn name(&self) -> &'static str;
    /// Called once per burst before any of its packets; `false` skips the stage for this burst
    /// (e.g. tunnel stages while no tunnel is configured). Resets per-burst caches, which must
    /// not outlive the snapshot in `cx`.
    #[inline]
    fn begin(&mut self, _cx: &Context<'_>) -> bool {
        true
    }
    /// Processes one packet whose verdict is `Continue`.
    fn packet(&mut self, cx: &Context<'_>, p: &mut PacketBuf);
}

impl<S: PacketStage> Stage for S {
    fn name(&self) -> &'static str {
        PacketStage::name(self)
    }

    #[inline]
    fn process(&mut self, cx: &Context<'_>, burst: &mut [PacketBuf]) {
        if !self.begin(cx) {
            return;
        }
        for p in burst.iter_mut() {
            if p.meta.verdict == Verdict::Continue {
                self.packet(cx, p);
            }
        }
    }
}

/// A traced packet's verdict after one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceStep {
    pub stage: &'static str,
    pub verdict: Verdict,
}

/// An ordered list of stages run over each burst.
pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
}

impl Pipeline {
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Pipeline {
        Pipeline { stages }
    }

    pub fn stage_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.stages.iter().map(|s| s.name())
    }

    /// Runs every stage over the burst. Packets still `Continue` at the end have no verdict:
    /// the caller treats that as a bug-class drop (a stage list must end in a deciding stage).
    #[inline]
    pub fn run(&mut self, cx: &Context<'_>, burst: &mut [PacketBuf]) {
        for s in &mut self.stages {
            s.process(cx, burst);
        }
    }

    /// Like [`Pipeline::run`], recording each traced packet's verdict after every stage into
    /// `trace(packet index, step)`. Only used while a trace is armed.
    pub fn run_traced(
        &mut self,
        cx: &Context<'_>,
        burst: &mut [PacketBuf],
        trace: &mut dyn FnMut(usize, TraceStep),
    ) {
        for s in &mut self.stages {
            // Only the stages a packet reaches are recorded (VPP's trace lists the nodes a
            // packet visited): one bit per traced packet still in flight.
            let mut in_flight = 0u64;
            for (i, p) in burst.iter().enumerate().take(64) {
                if p.meta.traced && p.meta.verdict == Verdict::Continue {
                    in_flight |= 1 << i;
                }
            }
            s.process(cx, burst);
            for (i, p) in burst.iter().enumerate() {
                if p.meta.traced && (i >= 64 || in_flight & (1 << i) != 0) {
                    trace(i, TraceStep { stage: s.name(), verdict: p.meta.verdict });
                }
            }
        }
    }
}
