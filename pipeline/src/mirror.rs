//! Incremental updates of large immutable tables: two copies, left-right style.
//!
//! Workers read tables only through immutable snapshots, so a table can never change under a
//! reader. Copying a table per change keeps that promise but costs its whole size (64 MiB for
//! the IPv4 FIB's first level) per publish. [`Mirrored`] keeps two copies instead: the live
//! one, which snapshots point at, and a spare, which no snapshot published after the last swap
//! points at. An update waits until the last reader of the spare is gone (workers drop their
//! snapshot after every burst, so that is microseconds), applies the operations that the live copy
//! got last time and then the new ones, and hands the spare back to become live. Each update
//! costs the size of the change twice, never the size of the table, and memory is twice the
//! table: the trade DPDK's and VPP's RCU-style FIBs avoid only by letting readers see entries
//! change under them, which our snapshots rule out.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A table that changes by replayable operations. Applying the same operations in the same
/// order to two equal tables must leave them equal and give the same results.
pub trait Apply {
    type Op: Clone;
    type Outcome;
    /// Applies one operation.
    fn apply(&mut self, op: &Self::Op) -> Self::Outcome;
    /// Called once after a batch (derived structures that are cheaper to rebuild once).
    fn finish(&mut self) {}
}

/// The live copy and a spare one step behind.
pub struct Mirrored<T: Apply> {
    live: Arc<T>,
    spare: Arc<T>,
    /// What the live copy has and the spare has not yet.
    lag: Vec<T::Op>,
}

/// The spare copy was still referenced after the wait: a reader held a snapshot far longer than
/// a burst (the caller should say which thread is stuck).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpareBusy;

impl std::fmt::Display for SpareBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a reader still holds an old table snapshot; update not applied")
    }
}

impl std::error::Error for SpareBusy {}

impl<T: Apply + Clone> Mirrored<T> {
    pub fn new(table: T) -> Mirrored<T> {
        Mirrored { spare: Arc::new(table.clone()), live: Arc::new(table), lag: Vec::new() }
    }
}

impl<T: Apply> Mirrored<T> {
    /// The copy that snapshots should point at.
    pub fn live(&self) -> &Arc<T> {
        &self.live
    }

    /// Applies `ops` and returns their outcomes; the new live copy is [`Mirrored::live`], to be
    /// published by the caller. The caller must have published (and dropped its own references
    /// to) every snapshot that points at the spare before; this waits up to `patience` for
    /// readers to let go of it.
    pub fn update(
        &mut self,
        ops: &[T::Op],
        patience: Duration,
    ) -> Result<Vec<T::Outcome>, SpareBusy> {
        let deadline = Instant::now() + patience;
        let spare = loop {
            if let Some(s) = Arc::get_mut(&mut self.spare) {
                break s;
            }
            if Instant::now() >= deadline {
                return Err(SpareBusy);
            }
            std::thread::sleep(Duration::from_micros(20));
        };
        for op in &self.lag {
            spare.apply(op);
        }
        let out = ops.iter().map(|op| spare.apply(op)).collect();
        spare.finish();
        self.lag = ops.to_vec();
        std::mem::swap(&mut self.live, &mut self.spare);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default, Debug, PartialEq)]
    struct Log(Vec<u32>);

    impl Apply for Log {
        type Op = u32;
        type Outcome = usize;
        fn apply(&mut self, op: &u32) -> usize {
            self.0.push(*op);
            self.0.len()
        }
    }

    #[test]
    fn both_copies_converge_and_snapshots_never_change() {
        let mut m = Mirrored::new(Log::default());
        let first = m.update(&[1, 2], Duration::from_millis(10)).unwrap();
        assert_eq!(first, vec![1, 2]);
        let snap = m.live().clone();
        // The spare is free (nobody holds it): the update goes through; the snapshot we hold
        // is now the spare, so the next one must wait for us.
        m.update(&[3], Duration::from_millis(10)).unwrap();
        assert_eq!(snap.0, vec![1, 2], "a held snapshot never changes");
        assert_eq!(m.live().0, vec![1, 2, 3]);
        assert_eq!(m.update(&[4], Duration::from_millis(5)), Err(SpareBusy));
        drop(snap);
        m.update(&[4], Duration::from_millis(10)).unwrap();
        assert_eq!(m.live().0, vec![1, 2, 3, 4]);
        m.update(&[], Duration::from_millis(10)).unwrap();
        assert_eq!(m.live().0, vec![1, 2, 3, 4], "the lagging copy caught up");
    }
}
