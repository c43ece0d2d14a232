//! RFC 2544 section 26.1 throughput search, sans-IO: the search decides which rate to offer next
//! and when to stop; running a trial (sending, waiting, counting) is the caller's closure.
//!
//! RFC 2544 defines throughput as "the fastest rate at which the count of test frames transmitted
//! by the DUT is equal to the number of test frames sent to it by the test equipment", found by
//! raising the rate after a trial without loss and lowering it after a trial with loss. It does
//! not say by how much; a binary search between the highest passing and the lowest failing rate
//! is the usual choice because it needs only about `log2(1/precision)` trials, and trials are
//! long (RFC 2544 section 24: at least 60 s each).
//!
//! A non-zero loss tolerance turns the zero-loss throughput ("NDR", no drop rate) into a partial
//! drop rate, the same idea as the "goal loss ratio" of the IETF BMWG's MLRsearch draft. It is
//! useful on software dataplanes, where one frame lost in a million to a preempted core would
//! otherwise dominate the result.

/// How to search. See [`SearchConfig::new`] for the usual defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// The first rate tried, and the highest: typically the line rate for the frame size.
    pub max_pps: f64,
    /// The lowest rate worth knowing about (default 0). Rates below it are not tried: if the
    /// device fails every trial down to here, the result is 0.
    pub min_pps: f64,
    /// Stop when `(hi - lo) / hi < precision`, `hi` the lowest failing rate and `lo` the highest
    /// passing one (or `min_pps`), e.g. 0.01 for 1%. The result is then within `precision` of the
    /// true throughput (for a device whose loss grows with the rate).
    pub precision: f64,
    /// Largest loss fraction a passing trial may have: 0.0 is RFC 2544's zero loss.
    pub loss_tolerance: f64,
    /// Hard bound on the number of trials, e.g. 30: the search stops there even if not within
    /// `precision` (a device whose loss is not monotone in the rate can otherwise wander).
    pub max_trials: u32,
}

impl SearchConfig {
    /// A zero-loss search below `max_pps` to 1% precision, in at most 30 trials.
    pub fn new(max_pps: f64) -> SearchConfig {
        SearchConfig { max_pps, min_pps: 0.0, precision: 0.01, loss_tolerance: 0.0, max_trials: 30 }
    }

    /// Refuses settings under which the search would make no sense or never end.
    fn check(&self) -> Result<(), String> {
        if !(self.max_pps.is_finite() && self.max_pps > 0.0) {
            return Err(format!("search: max rate must be positive, got {} pps", self.max_pps));
        }
        if !(self.min_pps >= 0.0 && self.min_pps < self.max_pps) {
            return Err(format!(
                "search: min rate must be at least 0 and below the max rate ({} pps), got {} pps",
                self.max_pps, self.min_pps
            ));
        }
        if !(self.precision > 0.0 && self.precision < 1.0) {
            return Err(format!(
                "search: precision must be between 0 and 1 (e.g. 0.01), got {}",
                self.precision
            ));
        }
        if !(self.loss_tolerance >= 0.0 && self.loss_tolerance < 1.0) {
            return Err(format!(
                "search: loss tolerance must be a fraction in [0, 1), got {}",
                self.loss_tolerance
            ));
        }
        if self.max_trials == 0 {
            return Err("search: max trials must be at least 1".into());
        }
        Ok(())
    }
}

/// One trial: the rate offered and the frames counted at each end.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub offered_pps: f64,
    /// Frames sent to the device.
    pub tx: u64,
    /// Frames received back from it.
    pub rx: u64,
}

impl Trial {
    /// Frames lost: `tx - rx`, or 0 if more came back than were sent (duplicates, or stray
    /// frames counted by the receiver; they are not evidence of loss).
    pub fn lost(&self) -> u64 {
        self.tx.saturating_sub(self.rx)
    }

    /// `lost / tx`, 0 when nothing was sent.
    pub fn loss_fraction(&self) -> f64 {
        if self.tx == 0 {
            return 0.0;
        }
        self.lost() as f64 / self.tx as f64
    }

    /// Whether the trial passes: `lost / tx <= loss_tolerance`.
    pub fn passes(&self, loss_tolerance: f64) -> bool {
        self.loss_fraction() <= loss_tolerance
    }
}

/// What the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    /// The highest offered rate that passed, 0 if none did.
    pub throughput_pps: f64,
    /// Every trial run, in order; RFC 2544 section 26.1 asks for the results to be reported,
    /// not just the throughput.
    pub trials: Vec<Trial>,
}

/// Binary search: first trial at max_pps; if it passes, done; else search between the highest
/// passed and the lowest failed rate (or `min_pps` while none has passed). A trial passes when
/// lost/tx <= loss_tolerance (lost = tx - rx, saturating; rx > tx counts as 0 loss). Bounded by
/// max_trials.
///
/// `run_trial(rate)` offers `rate` pps to the device and counts; the search decides by the rate it
/// asked for, whatever the returned [`Trial::offered_pps`] says (which is recorded as given, so
/// a generator that fell short can say so). An error from `run_trial`, an invalid `cfg` or a
/// trial that sent nothing (it cannot be judged) ends the search with an error.
///
/// Every rate tried lies strictly between the highest rate that has passed and the lowest that
/// has failed so far, so if the device's loss grows with the rate each trial narrows the bracket.
pub fn search(
    cfg: &SearchConfig,
    mut run_trial: impl FnMut(f64) -> Result<Trial, String>,
) -> Result<SearchResult, String> {
    cfg.check()?;
    let mut trials: Vec<Trial> = Vec::new();
    let mut passed: Option<f64> = None;
    let mut failed = f64::INFINITY;
    let mut rate = cfg.max_pps;
    while trials.len() < cfg.max_trials as usize {
        let trial = run_trial(rate).map_err(|e| format!("trial at {rate:.0} pps: {e}"))?;
        if trial.tx == 0 {
            return Err(format!("trial at {rate:.0} pps sent no frames, so it cannot be judged"));
        }
        if trial.passes(cfg.loss_tolerance) {
            passed = Some(rate);
        } else {
            failed = rate;
        }
        trials.push(trial);
        if failed == f64::INFINITY {
            break; // passed at max_pps: nothing higher is offered
        }
        let lo = passed.unwrap_or(cfg.min_pps);
        let hi = failed;
        if (hi - lo) / hi < cfg.precision {
            break;
        }
        let mid = lo + (hi - lo) / 2.0;
        if !(lo < mid && mid < hi) {
            break; // the bracket is narrower than f64 can split (only with a tiny precision)
        }
        rate = mid;
    }
    Ok(SearchResult { throughput_pps: passed.unwrap_or(0.0), trials })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TRIAL_SECS: f64 = 10.0;

    /// A device that forwards up to `capacity` pps and drops the excess above it (at least one
    /// frame, however close to `capacity`), and loses `base_loss` of what it forwards (a
    /// software dataplane's stray drops).
    fn device(capacity: f64, base_loss: f64) -> impl FnMut(f64) -> Result<Trial, String> {
        move |pps| {
            let tx = ((pps * TRIAL_SECS).ceil() as u64).max(1);
            let forwarded = if pps <= capacity {
                tx
            } else {
                ((capacity * TRIAL_SECS).floor() as u64).min(tx - 1)
            };
            let rx = forwarded - (forwarded as f64 * base_loss).ceil() as u64;
            Ok(Trial { offered_pps: pps, tx, rx })
        }
    }

    fn cfg(max_pps: f64) -> SearchConfig {
        SearchConfig::new(max_pps)
    }

    /// Each trial's rate lies strictly between all earlier passes and all earlier failures.
    fn assert_monotone(r: &SearchResult, tolerance: f64) {
        let mut lo = f64::NEG_INFINITY;
        let mut hi = f64::INFINITY;
        for t in &r.trials {
            assert!(lo < t.offered_pps && t.offered_pps < hi, "{t:?} outside ({lo}, {hi})");
            if t.passes(tolerance) {
                lo = t.offered_pps;
            } else {
                hi = t.offered_pps;
            }
        }
        assert_eq!(r.throughput_pps, lo.max(0.0));
    }

    #[test]
    fn finds_the_drop_point_within_precision() {
        let line_rate = 14_880_952.38;
        for x in [1234.0, 1_000_000.0, 7_500_000.0, 14_000_000.0, 14_880_000.0] {
            for precision in [0.1, 0.01, 0.001] {
                let c = SearchConfig { precision, ..cfg(line_rate) };
                let r = search(&c, device(x, 0.0)).unwrap();
                let found = r.throughput_pps;
                assert!(found <= x && found > x * (1.0 - precision), "{x} {precision}: {found}");
                assert!(r.trials.len() <= 30);
                assert_monotone(&r, 0.0);
            }
        }
    }

    #[test]
    fn number_of_trials_follows_precision() {
        // 1% precision from a first failure at max: log2(100) ~ 7 halvings.
        let r = search(&cfg(1e6), device(600_000.0, 0.0)).unwrap();
        assert!(r.trials.len() <= 9, "{}", r.trials.len());
        assert_eq!(r.trials[0].offered_pps, 1e6);
        assert_eq!(r.trials[1].offered_pps, 5e5);
        assert_eq!(r.trials[2].offered_pps, 7.5e5);
    }

    #[test]
    fn respects_max_trials() {
        for max_trials in [1, 2, 3, 5] {
            let c = SearchConfig { max_trials, precision: 1e-9, ..cfg(1e6) };
            let r = search(&c, device(333_333.0, 0.0)).unwrap();
            assert_eq!(r.trials.len(), max_trials as usize);
            assert!(r.throughput_pps <= 333_333.0);
        }
        // 1e6 and 5e5 fail, 2.5e5 passes: the best so far is the answer.
        let c = SearchConfig { max_trials: 3, ..cfg(1e6) };
        assert_eq!(search(&c, device(333_333.0, 0.0)).unwrap().throughput_pps, 250_000.0);
    }

    #[test]
    fn passing_at_max_takes_one_trial() {
        for x in [1e6, 2e6] {
            let r = search(&cfg(1e6), device(x, 0.0)).unwrap();
            assert_eq!(r.throughput_pps, 1e6);
            assert_eq!(r.trials, vec![Trial { offered_pps: 1e6, tx: 10_000_000, rx: 10_000_000 }]);
        }
    }

    #[test]
    fn never_passing_returns_zero() {
        let mut calls = 0;
        let r = search(&cfg(1e6), |pps| {
            calls += 1;
            Ok(Trial { offered_pps: pps, tx: 1000, rx: 999 })
        })
        .unwrap();
        assert_eq!(r.throughput_pps, 0.0);
        assert_eq!((r.trials.len(), calls), (30, 30), "min 0 is never reached: bounded by trials");
        assert_monotone(&r, 0.0);
        // With a floor, the search stops once the bracket above it is within precision.
        let c = SearchConfig { min_pps: 500_000.0, ..cfg(1e6) };
        let r = search(&c, device(100_000.0, 0.0)).unwrap();
        assert_eq!(r.throughput_pps, 0.0);
        assert!(r.trials.len() <= 8, "{}", r.trials.len());
        assert!(r.trials.iter().all(|t| t.offered_pps > 500_000.0));
    }

    #[test]
    fn loss_tolerance() {
        // 0.1% lost at every rate: no zero-loss rate at all, but a 0.2% partial drop rate.
        let r = search(&cfg(1e6), device(400_000.0, 0.001)).unwrap();
        assert_eq!(r.throughput_pps, 0.0);
        let c = SearchConfig { loss_tolerance: 0.002, ..cfg(1e6) };
        let r = search(&c, device(400_000.0, 0.001)).unwrap();
        assert!(r.throughput_pps <= 400_000.0 * 1.002 && r.throughput_pps > 400_000.0 * 0.99);
        assert_monotone(&r, 0.002);
        // Loss exactly at the tolerance passes.
        let exact = Trial { offered_pps: 1.0, tx: 1000, rx: 999 };
        assert!(exact.passes(0.001) && !exact.passes(0.0009));
    }

    #[test]
    fn more_received_than_sent_is_no_loss() {
        let t = Trial { offered_pps: 1.0, tx: 100, rx: 105 };
        assert_eq!((t.lost(), t.loss_fraction()), (0, 0.0));
        assert!(t.passes(0.0));
        let r = search(&cfg(1e6), |pps| Ok(Trial { offered_pps: pps, tx: 10, rx: 11 })).unwrap();
        assert_eq!((r.throughput_pps, r.trials.len()), (1e6, 1));
    }

    #[test]
    fn errors() {
        let e = search(&cfg(1e6), |_| Err("port down".to_string())).unwrap_err();
        assert_eq!(e, "trial at 1000000 pps: port down");
        let e = search(&cfg(1e6), |pps| Ok(Trial { offered_pps: pps, tx: 0, rx: 0 })).unwrap_err();
        assert!(e.contains("sent no frames"), "{e}");
        let bad = [
            SearchConfig { max_pps: 0.0, ..cfg(1.0) },
            SearchConfig { max_pps: f64::NAN, ..cfg(1.0) },
            SearchConfig { max_pps: f64::INFINITY, ..cfg(1.0) },
            SearchConfig { min_pps: -1.0, ..cfg(1e6) },
            SearchConfig { min_pps: 1e6, ..cfg(1e6) },
            SearchConfig { precision: 0.0, ..cfg(1e6) },
            SearchConfig { precision: 1.0, ..cfg(1e6) },
            SearchConfig { precision: f64::NAN, ..cfg(1e6) },
            SearchConfig { loss_tolerance: -0.1, ..cfg(1e6) },
            SearchConfig { loss_tolerance: 1.0, ..cfg(1e6) },
            SearchConfig { max_trials: 0, ..cfg(1e6) },
        ];
        for c in bad {
            let e = search(&c, |_| panic!("no trial for a bad config")).unwrap_err();
            assert!(e.starts_with("search: "), "{c:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn search_brackets_any_drop_point(
            max_pps in 1.0f64..1e9,
            frac in 0.0f64..1.2,
            precision in 0.0005f64..0.2,
            max_trials in 1u32..40,
        ) {
            let x = max_pps * frac;
            let c = SearchConfig { precision, max_trials, ..cfg(max_pps) };
            let r = search(&c, device(x, 0.0)).unwrap();
            prop_assert!(!r.trials.is_empty() && r.trials.len() <= max_trials as usize);
            prop_assert!(r.throughput_pps <= x.min(max_pps));
            let converged = r.trials.len() < max_trials as usize;
            if converged && x > 0.0 {
                prop_assert!(r.throughput_pps > x.min(max_pps) * (1.0 - precision));
            }
            assert_monotone(&r, 0.0);
        }

        /// A device with more capacity never gets a lower throughput.
        #[test]
        fn throughput_is_monotone_in_capacity(a in 0.0f64..2e6, b in 0.0f64..2e6) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let c = cfg(1e6);
            let r_lo = search(&c, device(lo, 0.0)).unwrap().throughput_pps;
            let r_hi = search(&c, device(hi, 0.0)).unwrap().throughput_pps;
            prop_assert!(r_lo <= r_hi, "{} -> {}, {} -> {}", lo, r_lo, hi, r_hi);
        }
    }
}
