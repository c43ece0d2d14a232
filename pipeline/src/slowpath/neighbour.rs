//! Neighbour resolution state (ARP, RFC 826; IPv6 neighbour discovery, RFC 4861), sans-IO.
//!
//! The cache decides; the caller sends. Every method takes the time, so replay's virtual clock
//! and the live process's monotonic clock drive it alike. States are a reduced RFC 4861 7.3.2:
//! `Incomplete` (probing, packets queued), `Reachable` (usable; re-probed when it ages),
//! `Failed` (recently unanswered: new packets are dropped rather than starting another probe
//! storm), and `Static` (configured, never aged).

use std::collections::VecDeque;

use crate::meta::{Addr, PortId};
use crate::tables::MacAddr;

/// How long an answered entry is trusted before it is probed again (RFC 4861's REACHABLE_TIME).
pub const REACHABLE_NS: u64 = 30_000_000_000;
/// Time between probes (RFC 4861's RETRANS_TIMER).
pub const RETRANS_NS: u64 = 1_000_000_000;
/// Probes before giving up (MAX_MULTICAST_SOLICIT).
pub const MAX_PROBES: u8 = 3;
/// How long a failed entry refuses new packets.
pub const FAILED_HOLD_NS: u64 = 1_000_000_000;
/// Packets queued per unresolved neighbour.
pub const QUEUE_PER_NEIGHBOUR: usize = 16;

#[derive(Debug)]
pub enum State<P> {
    Incomplete { probes: u8, next_probe_ns: u64, queue: VecDeque<P> },
    Reachable { mac: MacAddr, expires_ns: u64, probes: u8 },
    Failed { until_ns: u64 },
    Static { mac: MacAddr },
}

/// What the caller must do after a timer pass.
#[derive(Debug)]
pub enum Action<P> {
    /// Send a (broadcast/multicast) solicitation for this neighbour.
    Probe { port: PortId, addr: Addr },
    /// These packets waited in vain: drop and count them.
    GiveUp { port: PortId, addr: Addr, dropped: Vec<P> },
    /// The entry was removed (the published table must lose it).
    Expired { port: PortId, addr: Addr },
}

/// Result of asking for a neighbour's MAC with a packet in hand.
#[derive(Debug)]
pub enum Lookup<P> {
    /// Known: send now.
    Known(MacAddr, P),
    /// Queued; `probe` says whether to send a solicitation now (first packet).
    Queued { probe: bool },
    /// Dropped: the neighbour recently failed, or its queue is full.
    Refused(P, Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Failed,
    QueueFull,
}

/// The neighbour cache of all ports. `P` is the queued packet type.
pub struct Cache<P> {
    entries: hashbrown::HashMap<(PortId, Addr), State<P>, foldhash::fast::RandomState>,
    queued: usize,
    queue_limit: usize,
    changed: bool,
}

impl<P> Cache<P> {
    /// `queue_limit`: packets queued over all neighbours at most (each holds a pool buffer).
    pub fn new(queue_limit: usize) -> Cache<P> {
        Cache { entries: Default::default(), queued: 0, queue_limit, changed: false }
    }

    /// Adds a configured entry.
    pub fn add_static(&mut self, port: PortId, addr: Addr, mac: MacAddr) {
        self.entries.insert((port, addr), State::Static { mac });
        self.changed = true;
    }

    /// Removes an entry (static or learned); queued packets are returned for dropping.
    pub fn remove(&mut self, port: PortId, addr: &Addr) -> Vec<P> {
        self.changed = true;
        match self.entries.remove(&(port, *addr)) {
            Some(State::Incomplete { queue, .. }) => {
                self.queued -= queue.len();
                queue.into()
            }
            _ => Vec::new(),
        }
    }

    /// True when the cache has any entry for the neighbour (in any state).
    pub fn contains(&self, port: PortId, addr: &Addr) -> bool {
        self.entries.contains_key(&(port, *addr))
    }

    /// The MAC for a neighbour, if usable.
    pub fn get(&self, port: PortId, addr: &Addr) -> Option<MacAddr> {
        match self.entries.get(&(port, *addr))? {
            State::Reachable { mac, .. } | State::Static { mac } => Some(*mac),
            _ => None,
        }
    }

    /// Resolves `addr` for packet `pkt`.
    pub fn resolve(&mut self, now_ns: u64, port: PortId, addr: Addr, pkt: P) -> Lookup<P> {
        let total_full = self.queued >= self.queue_limit;
        match self.entries.get_mut(&(port, addr)) {
            Some(State::Reachable { mac, .. }) | Some(State::Static { mac }) => {
                Lookup::Known(*mac, pkt)
            }
            Some(State::Failed { until_ns }) if now_ns < *until_ns => {
                Lookup::Refused(pkt, Refusal::Failed)
            }
            Some(State::Incomplete { queue, .. }) => {
                if queue.len() >= QUEUE_PER_NEIGHBOUR || total_full {
                    return Lookup::Refused(pkt, Refusal::QueueFull);
                }
                queue.push_back(pkt);
                self.queued += 1;
                Lookup::Queued { probe: false }
            }
            _ => {
                if total_full {
                    return Lookup::Refused(pkt, Refusal::QueueFull);
                }
                let mut queue = VecDeque::with_capacity(4);
                queue.push_back(pkt);
                self.queued += 1;
                self.entries.insert(
                    (port, addr),
                    State::Incomplete { probes: 1, next_probe_ns: now_ns + RETRANS_NS, queue },
                );
                Lookup::Queued { probe: true }
            }
        }
    }

    /// Starts resolving `addr` without a packet (e.g. the control socket asked), unless known.
    /// Returns whether to probe now.
    pub fn solicit(&mut self, now_ns: u64, port: PortId, addr: Addr) -> bool {
        if self.entries.contains_key(&(port, addr)) {
            return false;
        }
        self.entries.insert(
            (port, addr),
            State::Incomplete {
                probes: 1,
                next_probe_ns: now_ns + RETRANS_NS,
                queue: VecDeque::new(),
            },
        );
        true
    }

    /// A neighbour told us its MAC (ARP reply or request, NA, NS with a source link-layer
    /// option). `create`: add the entry even if we were not resolving it (RFC 826: when the
    /// message was addressed to us). Returns the packets that were waiting for it.
    pub fn learn(
        &mut self,
        now_ns: u64,
        port: PortId,
        addr: Addr,
        mac: MacAddr,
        create: bool,
    ) -> Vec<P> {
        let key = (port, addr);
        let reachable = State::Reachable { mac, expires_ns: now_ns + REACHABLE_NS, probes: 0 };
        match self.entries.get_mut(&key) {
            Some(State::Static { .. }) => Vec::new(),
            Some(e @ State::Incomplete { .. }) => {
                let old = std::mem::replace(e, reachable);
                self.changed = true;
                match old {
                    State::Incomplete { queue, .. } => {
                        self.queued -= queue.len();
                        queue.into()
                    }
                    _ => Vec::new(),
                }
            }
            Some(e) => {
                if !matches!(e, State::Reachable { mac: m, .. } if *m == mac) {
                    self.changed = true;
                }
                *e = reachable;
                Vec::new()
            }
            None if create => {
                self.entries.insert(key, reachable);
                self.changed = true;
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Runs the timers due at `now_ns`.
    pub fn poll_timers(&mut self, now_ns: u64, out: &mut Vec<Action<P>>) {
        let mut remove = Vec::new();
        for (&(port, addr), st) in self.entries.iter_mut() {
            match st {
                State::Incomplete { probes, next_probe_ns, queue } if now_ns >= *next_probe_ns => {
                    if *probes >= MAX_PROBES {
                        self.queued -= queue.len();
                        out.push(Action::GiveUp {
                            port,
                            addr,
                            dropped: std::mem::take(queue).into(),
                        });
                        *st = State::Failed { until_ns: now_ns + FAILED_HOLD_NS };
                    } else {
                        *probes += 1;
                        *next_probe_ns = now_ns + RETRANS_NS;
                        out.push(Action::Probe { port, addr });
                    }
                }
                State::Reachable { expires_ns, probes, .. } if now_ns >= *expires_ns => {
                    // Still used meanwhile (RFC 4861 STALE/PROBE); gone after MAX_PROBES.
                    if *probes >= MAX_PROBES {
                        remove.push((port, addr));
                        out.push(Action::Expired { port, addr });
                    } else {
                        *probes += 1;
                        *expires_ns = now_ns + RETRANS_NS;
                        out.push(Action::Probe { port, addr });
                    }
                }
                State::Failed { until_ns } if now_ns >= *until_ns => remove.push((port, addr)),
                _ => {}
            }
        }
        for k in remove {
            self.entries.remove(&k);
            self.changed = true;
        }
    }

    /// Earliest time a timer is due.
    pub fn next_timer(&self) -> Option<u64> {
        self.entries
            .values()
            .filter_map(|s| match s {
                State::Incomplete { next_probe_ns, .. } => Some(*next_probe_ns),
                State::Reachable { expires_ns, .. } => Some(*expires_ns),
                State::Failed { until_ns } => Some(*until_ns),
                State::Static { .. } => None,
            })
            .min()
    }

    /// True once after any change to the usable entries (the caller republishes tables).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Every usable entry: (port, address, mac, is_static).
    pub fn usable(&self) -> impl Iterator<Item = (PortId, Addr, MacAddr, bool)> + '_ {
        self.entries.iter().filter_map(|(&(p, a), s)| match s {
            State::Reachable { mac, .. } => Some((p, a, *mac, false)),
            State::Static { mac } => Some((p, a, *mac, true)),
            _ => None,
        })
    }

    /// Every packet still queued, taken out (end of replay, shutdown).
    pub fn drain_queued(&mut self) -> Vec<P> {
        let mut v = Vec::new();
        for s in self.entries.values_mut() {
            if let State::Incomplete { queue, .. } = s {
                v.extend(queue.drain(..));
            }
        }
        self.queued = 0;
        v
    }

    pub fn queued(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Addr = crate::flow::v4_mapped([10, 0, 0, 2]);
    const MAC: MacAddr = [2, 0, 0, 0, 0, 2];

    #[test]
    fn queue_then_learn_releases_in_order() {
        let mut c: Cache<u32> = Cache::new(100);
        assert!(matches!(c.resolve(0, 1, A, 1), Lookup::Queued { probe: true }));
        assert!(matches!(c.resolve(1, 1, A, 2), Lookup::Queued { probe: false }));
        assert_eq!(c.queued(), 2);
        assert_eq!(c.learn(5, 1, A, MAC, false), vec![1, 2]);
        assert!(c.take_changed());
        assert_eq!(c.get(1, &A), Some(MAC));
        assert!(matches!(c.resolve(6, 1, A, 3), Lookup::Known(MAC, 3)));
        assert_eq!(c.queued(), 0);
    }

    #[test]
    fn three_probes_then_give_up_then_hold_then_retry() {
        let mut c: Cache<u32> = Cache::new(100);
        let mut out = Vec::new();
        assert!(matches!(c.resolve(0, 0, A, 7), Lookup::Queued { probe: true }));
        c.poll_timers(RETRANS_NS, &mut out);
        c.poll_timers(2 * RETRANS_NS, &mut out);
        assert_eq!(out.iter().filter(|a| matches!(a, Action::Probe { .. })).count(), 2);
        out.clear();
        c.poll_timers(3 * RETRANS_NS, &mut out);
        assert!(matches!(&out[..], [Action::GiveUp { dropped, .. }] if dropped == &vec![7]));
        assert!(matches!(
            c.resolve(3 * RETRANS_NS + 1, 0, A, 8),
            Lookup::Refused(8, Refusal::Failed)
        ));
        out.clear();
        c.poll_timers(4 * RETRANS_NS + 1, &mut out);
        assert!(matches!(c.resolve(4 * RETRANS_NS + 2, 0, A, 9), Lookup::Queued { probe: true }));
    }

    #[test]
    fn reachable_ages_into_probes_and_expires() {
        let mut c: Cache<u32> = Cache::new(100);
        c.learn(0, 0, A, MAC, true);
        let mut out = Vec::new();
        c.poll_timers(REACHABLE_NS - 1, &mut out);
        assert!(out.is_empty());
        let mut t = REACHABLE_NS;
        for _ in 0..3 {
            c.poll_timers(t, &mut out);
            assert_eq!(c.get(0, &A), Some(MAC), "still usable while probing");
            t += RETRANS_NS;
        }
        c.poll_timers(t, &mut out);
        assert!(matches!(out.last(), Some(Action::Expired { .. })));
        assert_eq!(c.get(0, &A), None);
        // An answer to a probe refreshes it instead.
        c.learn(t, 0, A, MAC, true);
        c.poll_timers(t + REACHABLE_NS, &mut out);
        c.learn(t + REACHABLE_NS + 1, 0, A, MAC, false);
        out.clear();
        c.poll_timers(t + REACHABLE_NS + 5 * RETRANS_NS, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn queue_limits() {
        let mut c: Cache<u32> = Cache::new(20);
        for i in 0..QUEUE_PER_NEIGHBOUR as u32 {
            assert!(matches!(c.resolve(0, 0, A, i), Lookup::Queued { .. }));
        }
        assert!(matches!(c.resolve(0, 0, A, 99), Lookup::Refused(99, Refusal::QueueFull)));
        let b = crate::flow::v4_mapped([10, 0, 0, 3]);
        for i in 0..4 {
            assert!(matches!(c.resolve(0, 0, b, i), Lookup::Queued { .. }));
        }
        assert!(matches!(c.resolve(0, 0, b, 5), Lookup::Refused(5, Refusal::QueueFull)));
        assert_eq!(c.drain_queued().len(), 20);
    }

    #[test]
    fn statics_are_never_overwritten_or_aged() {
        let mut c: Cache<u32> = Cache::new(10);
        c.add_static(0, A, MAC);
        c.learn(0, 0, A, [9; 6], true);
        assert_eq!(c.get(0, &A), Some(MAC));
        let mut out = Vec::new();
        c.poll_timers(u64::MAX / 2, &mut out);
        assert!(out.is_empty());
        assert_eq!(c.next_timer(), None);
    }
}
