//! Rates, frame sizes and durations for `ferroplane gen`, and the token bucket that paces its TX
//! loop. Sans-IO: nothing here reads a clock; time is passed in as nanoseconds.
//!
//! Rates can be given in packets per second or in *layer-1* bits per second. The layer-1 figure
//! counts what occupies the wire, so "10gbps" of 64-byte frames is the familiar 14,880,952 pps line
//! rate of 10GbE (RFC 5180 appendix A.1, from IEEE 802.3: every frame also costs a 7-byte preamble,
//! a 1-byte start-of-frame delimiter and a 12-byte inter-frame gap).

use std::cell::Cell;
use std::str::FromStr;
use std::time::Duration;

/// Ethernet layer-1 overhead per frame: preamble+SFD 8 + inter-frame gap 12 bytes.
///
/// Frame sizes in this module include the FCS, as RFC 2544's Ethernet sizes do (64 to 1518), so a
/// frame of `size` bytes occupies `size + L1_OVERHEAD` bytes of wire time.
pub const L1_OVERHEAD: usize = 20;

/// Highest packet rate accepted by [`Rate::from_str`]: 1 Gpps is well above the 64-byte line rate
/// of 400GbE (about 595 Mpps), so anything higher is a typo, not a wish.
pub const MAX_PPS: f64 = 1e9;

/// Highest layer-1 bit rate accepted by [`Rate::from_str`]: 1 Tbps, above any single port.
pub const MAX_BPS: f64 = 1e12;

/// The classic "simple IMIX": 7 x 64, 4 x 570, 1 x 1518 bytes (all including FCS), as one
/// 12-frame cycle.
///
/// RFC 6985 points out that an IMIX is not just a ratio: the order in which sizes are sent
/// changes what the device sees, so the order is fixed here. The five large frames are spread so
/// that no two are adjacent, not even across the wrap-around from one cycle to the next: sending
/// all 1518/570-byte frames back to back would stress buffers differently from a real mix.
pub const IMIX: [usize; 12] = [64, 570, 64, 64, 570, 64, 1518, 64, 570, 64, 64, 570];

/// How fast to send: a packet rate, a layer-1 bit rate, or as fast as the port accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Packets per second.
    Pps(f64),
    /// Layer-1 bits per second: frame bytes plus [`L1_OVERHEAD`], times 8.
    Bps(f64),
    /// No pacing: send as fast as the TX ring takes frames.
    Max,
}

impl Rate {
    /// Packets per second for frames of `avg_frame_size` bytes (size incl. FCS):
    /// bps / ((size + L1_OVERHEAD) * 8). Max -> None.
    ///
    /// For a mix of sizes pass the mean size (see [`mean_size`]): the wire time of a sequence is
    /// the sum of its frames' wire times, so the mean gives the exact long-run packet rate.
    pub fn pps(&self, avg_frame_size: f64) -> Option<f64> {
        match *self {
            Rate::Pps(pps) => Some(pps),
            Rate::Bps(bps) => Some(bps / ((avg_frame_size + L1_OVERHEAD as f64) * 8.0)),
            Rate::Max => None,
        }
    }
}

/// The accepted forms, for error messages.
const RATE_FORMS: &str =
    "expected a number with a unit such as 1000pps, 50kpps, 1.5Mpps, 100mbps, 10Gbps, or `max`";

impl FromStr for Rate {
    type Err = String;

    /// "50kpps", "1.5Mpps", "1000pps", "2gbps", "100mbps", "10Gbps", "max".
    ///
    /// Units are case-insensitive and the prefixes k, m, g are powers of 1000 (so `m` is mega:
    /// nobody means millipackets). Bit rates are layer-1 rates (see [`Rate::Bps`]). Zero,
    /// negative, NaN and impossible rates (above [`MAX_PPS`] or [`MAX_BPS`]) are refused, naming
    /// the text that was given.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        // ASCII lowercasing keeps byte offsets, so offsets found in `lower` slice `text`.
        let lower = text.to_ascii_lowercase();
        let (body_len, pps) = if lower.ends_with("pps") {
            (text.len() - 3, true)
        } else if lower.ends_with("bps") {
            (text.len() - 3, false)
        } else {
            return Err(format!("invalid rate `{s}`: {RATE_FORMS}"));
        };
        let body = text[..body_len].trim_end();
        let (number, multiplier) = match body.as_bytes().last().map(u8::to_ascii_lowercase) {
            Some(b'k') => (&body[..body.len() - 1], 1e3),
            Some(b'm') => (&body[..body.len() - 1], 1e6),
            Some(b'g') => (&body[..body.len() - 1], 1e9),
            _ => (body, 1.0),
        };
        let number = number.trim();
        if number.is_empty() {
            return Err(format!("invalid rate `{s}`: no number before the unit; {RATE_FORMS}"));
        }
        let value: f64 = number.parse().map_err(|_| {
            format!("invalid rate `{s}`: `{number}` is not a number (unit prefixes are k, M, G)")
        })?;
        if value.is_nan() {
            return Err(format!("invalid rate `{s}`: `{number}` is not a number"));
        }
        let value = value * multiplier;
        if value <= 0.0 {
            return Err(format!("invalid rate `{s}`: a rate must be greater than zero"));
        }
        let (limit, unit) = if pps { (MAX_PPS, "pps") } else { (MAX_BPS, "bps") };
        if value > limit {
            return Err(format!(
                "impossible rate `{s}`: {value:e} {unit} exceeds {limit:e} {unit}"
            ));
        }
        Ok(if pps { Rate::Pps(value) } else { Rate::Bps(value) })
    }
}

/// "64", "64,128,1518", "imix" -> the list of frame sizes in order. Errors for non-numbers,
/// empty, zero.
///
/// Sizes include the FCS, as in RFC 2544 section 9.1's Ethernet sizes (64, 128, 256, 512, 1024,
/// 1280, 1518). The generator sends the list cyclically, in order; `imix` is [`IMIX`].
/// Whitespace around entries is ignored; `imix` is case-insensitive.
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!(
            "invalid frame sizes `{s}`: expected sizes like 64,128,1518 or `imix`"
        ));
    }
    if text.eq_ignore_ascii_case("imix") {
        return Ok(IMIX.to_vec());
    }
    text.split(',')
        .map(|entry| {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(format!("invalid frame sizes `{s}`: empty entry"));
            }
            match entry.parse::<usize>() {
                Ok(0) => Err(format!("invalid frame sizes `{s}`: a frame size cannot be 0")),
                Ok(size) => Ok(size),
                Err(_) => Err(format!(
                    "invalid frame sizes `{s}`: `{entry}` is not a whole number of bytes \
                     (expected sizes like 64,128,1518 or `imix`)"
                )),
            }
        })
        .collect()
}

/// Mean of `sizes` (0 for an empty list): the size to give [`Rate::pps`] for a mix of sizes.
pub fn mean_size(sizes: &[usize]) -> f64 {
    if sizes.is_empty() {
        return 0.0;
    }
    sizes.iter().map(|&s| s as f64).sum::<f64>() / sizes.len() as f64
}

/// Duration units, longest suffix first so `ms` is not read as `m` + `s`.
const DURATION_UNITS: [(&str, f64); 7] =
    [("ns", 1.0), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)];

/// "2s", "500ms", "1.5s", "3m", "10us"-> Duration; errors otherwise; zero is an error.
///
/// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m` (minutes), `h`; case-insensitive; fractions are
/// allowed and rounded to the nanosecond. A bare number is refused rather than guessed at
/// (RFC 2544 section 24 asks for trials of at least 60 s, and "60" read as milliseconds would
/// quietly make a useless benchmark).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    // ASCII lowercasing keeps byte offsets (and leaves `µ` alone), so offsets found in `lower`
    // slice `text`.
    let lower = text.to_ascii_lowercase();
    let Some((number, unit_ns)) = DURATION_UNITS
        .iter()
        .find(|(u, _)| lower.ends_with(u))
        .map(|&(u, ns)| (text[..text.len() - u.len()].trim(), ns))
    else {
        return Err(format!(
            "invalid duration `{s}`: expected a number with a unit (ns, us, ms, s, m, h), \
             like 2s, 500ms, 1.5s, 3m"
        ));
    };
    if number.is_empty() {
        return Err(format!("invalid duration `{s}`: no number before the unit"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: `{number}` is not a number"))?;
    if value.is_nan() {
        return Err(format!("invalid duration `{s}`: `{number}` is not a number"));
    }
    if value < 0.0 {
        return Err(format!("invalid duration `{s}`: a duration cannot be negative"));
    }
    let ns = (value * unit_ns).round();
    if ns < 1.0 {
        return Err(format!("invalid duration `{s}`: a duration must be greater than zero"));
    }
    if ns >= u64::MAX as f64 {
        return Err(format!("invalid duration `{s}`: too long"));
    }
    Ok(Duration::from_nanos(ns as u64))
}

/// Nanoseconds per second.
const NS_PER_SEC: u128 = 1_000_000_000;
/// The bucket keeps its rate in micro-packets per second, an integer, so pacing is exact integer
/// arithmetic; rounding the rate to 1e-6 pps costs at most 1 packet per 2e6 s.
const RATE_SCALE: f64 = 1e6;
/// Credit units per token: in 1 s at 1 pps (`RATE_SCALE` units per ns) one token accrues.
const UNIT: u128 = NS_PER_SEC * RATE_SCALE as u128;

/// Token bucket pacing the TX loop: [`take`](Self::take) says how many packets may go now,
/// [`next_ready_ns`](Self::next_ready_ns) when the next one may. Exact over the long run: after T
/// seconds the number taken is `pps * T` within 1 packet.
///
/// Credit is an integer count of `1 / (1e9 * 1e6)` tokens, earned at the rate (in micro-pps) for
/// every elapsed nanosecond; taking a packet spends exactly one token, and the fraction left over
/// is kept. Nothing is rounded per call, so there is no drift however the loop polls: as long as
/// the caller keeps taking what is available before `burst` tokens pile up, the number taken
/// between the first call and time `t` is exactly `floor(pps * elapsed)`.
///
/// The clock starts at the first call to [`take`](Self::take) or
/// [`next_ready_ns`](Self::next_ready_ns), with an empty bucket: the first packet is due one
/// interval (`1/pps`) later, and the TX loop never runs ahead of the rate. Time that goes
/// backwards is ignored. (`next_ready_ns` takes `&self` so a loop can ask while it holds the
/// bucket shared; the only state it changes is that start of the clock, hence the `Cell`,
/// which makes the bucket `Send` but not `Sync`: it belongs to one TX loop.)
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Micro-packets per second, equal to credit units earned per nanosecond.
    rate: u128,
    /// Credit cap: `burst` tokens.
    cap: u128,
    /// Current credit, `<= cap`.
    credit: u128,
    /// Time of the last update; `None` until the first call.
    last_ns: Cell<Option<u64>>,
}

impl TokenBucket {
    /// A bucket earning `pps` tokens per second and holding at most `burst` of them (`burst` 0 is
    /// taken as 1, or nothing could ever be sent).
    ///
    /// `burst` bounds the spike after the loop stalls (a full ring, a page fault, a preempted
    /// core): at most `burst` packets go back to back to catch up, the rest of the gap is lost
    /// rather than sent at line rate. It should be at least the packets one poll of the TX loop
    /// covers (say a 64-frame TX batch), or the loop's own polling costs rate.
    ///
    /// # Panics
    ///
    /// If `pps` is not a positive finite number ([`Rate::from_str`] never yields one).
    pub fn new(pps: f64, burst: usize) -> TokenBucket {
        assert!(pps.is_finite() && pps > 0.0, "token bucket rate must be positive, got {pps}");
        let rate = ((pps * RATE_SCALE).round() as u128).max(1);
        TokenBucket { rate, cap: burst.max(1) as u128 * UNIT, credit: 0, last_ns: Cell::new(None) }
    }

    /// The time of the last update, starting the clock at `now_ns` on the first call.
    fn last(&self, now_ns: u64) -> u64 {
        match self.last_ns.get() {
            Some(last) => last,
            None => {
                self.last_ns.set(Some(now_ns));
                now_ns
            }
        }
    }

    /// The credit at `now_ns` (as of `last` if `now_ns` is earlier), capped at `burst` tokens.
    fn credit_at(&self, last: u64, now_ns: u64) -> u128 {
        let earned = u128::from(now_ns.saturating_sub(last)).saturating_mul(self.rate);
        self.credit.saturating_add(earned).min(self.cap)
    }

    /// Brings the credit up to `now_ns`.
    fn advance(&mut self, now_ns: u64) {
        let last = self.last(now_ns);
        if now_ns > last {
            self.credit = self.credit_at(last, now_ns);
            self.last_ns.set(Some(now_ns));
        }
    }

    /// How many packets may be sent at `now_ns`: at most `want`, and at most the credit (which
    /// never exceeds `burst`). The packets returned are spent; send them.
    pub fn take(&mut self, now_ns: u64, want: usize) -> usize {
        self.advance(now_ns);
        let available = self.credit / UNIT;
        let n = available.min(want as u128);
        self.credit -= n * UNIT;
        n as usize
    }

    /// The earliest time, at or after `now_ns`, at which [`take`](Self::take) will return at
    /// least one packet: `now_ns` itself if a token is already there. One nanosecond earlier
    /// would be too early, so a loop may sleep or spin until exactly this time.
    pub fn next_ready_ns(&self, now_ns: u64) -> u64 {
        let last = self.last(now_ns);
        let now = last.max(now_ns);
        let credit = self.credit_at(last, now);
        if credit >= UNIT {
            return now;
        }
        let wait = (UNIT - credit).div_ceil(self.rate);
        now.saturating_add(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn rate_err(s: &str) -> String {
        match s.parse::<Rate>() {
            Ok(r) => panic!("{s} parsed as {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_rates() {
        assert_eq!(rate("50kpps"), Rate::Pps(50_000.0));
        assert_eq!(rate("1.5Mpps"), Rate::Pps(1_500_000.0));
        assert_eq!(rate("1000pps"), Rate::Pps(1000.0));
        assert_eq!(rate("2gbps"), Rate::Bps(2e9));
        assert_eq!(rate("100mbps"), Rate::Bps(100e6));
        assert_eq!(rate("10Gbps"), Rate::Bps(10e9));
        assert_eq!(rate("10GBPS"), Rate::Bps(10e9));
        assert_eq!(rate("1.4881MPPS"), Rate::Pps(1_488_100.0));
        assert_eq!(rate("64kbps"), Rate::Bps(64_000.0));
        assert_eq!(rate("9600bps"), Rate::Bps(9600.0));
        assert_eq!(rate(" 10 Gbps "), Rate::Bps(10e9));
        assert_eq!(rate("1gpps"), Rate::Pps(1e9));
        assert_eq!(rate("1e12bps"), Rate::Bps(1e12));
        assert_eq!(rate("max"), Rate::Max);
        assert_eq!(rate("MAX"), Rate::Max);
    }

    #[test]
    fn rejects_bad_rates_naming_the_text() {
        for bad in ["", "fast", "1000", "10gb", "pps", "kpps", "xkpps", "10tbps", "1.2.3pps"] {
            let e = rate_err(bad);
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
        assert!(rate_err("10tbps").contains("`10t` is not a number"), "{}", rate_err("10tbps"));
        assert!(rate_err("1000").contains("pps"), "the message shows the accepted forms");
        for bad in ["0pps", "0gbps", "-5kpps", "-0pps", "-1gbps"] {
            assert!(rate_err(bad).contains("greater than zero"), "{bad}: {}", rate_err(bad));
        }
        for bad in ["nanpps", "NaNgbps"] {
            assert!(rate_err(bad).contains("not a number"), "{bad}: {}", rate_err(bad));
        }
        for bad in ["1.5gpps", "2000mpps", "1001000000pps", "infpps", "1.1e12bps", "2000gbps"] {
            let e = rate_err(bad);
            assert!(e.starts_with("impossible rate") && e.contains("exceeds"), "{bad}: {e}");
        }
    }

    #[test]
    fn pps_conversion() {
        // 10GbE line rate for 64-byte frames: 10e9 / (84 * 8).
        let pps = rate("10gbps").pps(64.0).unwrap();
        assert_eq!(pps.floor(), 14_880_952.0);
        assert_eq!(rate("1gbps").pps(64.0).unwrap().floor(), 1_488_095.0);
        assert_eq!(rate("10gbps").pps(1518.0).unwrap().floor(), 812_743.0);
        assert_eq!(rate("50kpps").pps(1518.0), Some(50_000.0));
        assert_eq!(Rate::Max.pps(64.0), None);
        // IMIX at 10G, through the mean size.
        let imix = rate("10gbps").pps(mean_size(&IMIX)).unwrap();
        let wire_bits: f64 = IMIX.iter().map(|&s| ((s + L1_OVERHEAD) * 8) as f64).sum();
        assert!((imix - 10e9 * 12.0 / wire_bits).abs() < 1e-6);
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_sizes("64"), Ok(vec![64]));
        assert_eq!(parse_sizes("64,128,1518"), Ok(vec![64, 128, 1518]));
        assert_eq!(parse_sizes(" 64 , 128 "), Ok(vec![64, 128]));
        assert_eq!(parse_sizes("IMIX"), Ok(IMIX.to_vec()));
        let bad = [
            ("", "expected sizes"),
            ("  ", "expected sizes"),
            ("64,,128", "empty entry"),
            ("64,", "empty entry"),
            ("0", "cannot be 0"),
            ("64,0", "cannot be 0"),
            ("abc", "`abc` is not a whole number"),
            ("64,1.5", "`1.5` is not a whole number"),
            ("-64", "`-64` is not a whole number"),
            ("imix,64", "`imix` is not a whole number"),
        ];
        for (s, msg) in bad {
            let e = parse_sizes(s).unwrap_err();
            assert!(e.contains(msg), "{s:?}: {e}");
            assert!(e.contains(&format!("`{}`", s)), "{s:?}: {e}");
        }
    }

    #[test]
    fn imix_is_7_4_1_and_spread() {
        let sizes = parse_sizes("imix").unwrap();
        assert_eq!(sizes.len(), 12);
        let count = |n| sizes.iter().filter(|&&s| s == n).count();
        assert_eq!((count(64), count(570), count(1518)), (7, 4, 1));
        assert!((mean_size(&sizes) - 353.83).abs() < 0.01, "{}", mean_size(&sizes));
        // No two large frames back to back, including across cycles.
        for i in 0..sizes.len() {
            let next = sizes[(i + 1) % sizes.len()];
            assert!(sizes[i] == 64 || next == 64, "large frames bunched at {i}: {sizes:?}");
        }
    }

    #[test]
    fn parses_durations() {
        let ok = [
            ("2s", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("3m", Duration::from_secs(180)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("250ns", Duration::from_nanos(250)),
            ("1h", Duration::from_secs(3600)),
            ("0.1s", Duration::from_millis(100)),
            (" 60 s ", Duration::from_secs(60)),
            ("2S", Duration::from_secs(2)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        let bad = [
            ("", "expected a number with a unit"),
            ("60", "expected a number with a unit"),
            ("2d", "expected a number with a unit"),
            ("s", "no number"),
            ("ms", "no number"),
            ("x2s", "`x2` is not a number"),
            ("NaNms", "`NaN` is not a number"),
            ("nans", "`na` is not a number"), // nanoseconds of `na`
            ("-1s", "negative"),
            ("0s", "greater than zero"),
            ("0ms", "greater than zero"),
            ("0.1ns", "greater than zero"),
            ("1e30h", "too long"),
            ("infs", "too long"),
        ];
        for (s, msg) in bad {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains(msg) && e.contains(&format!("`{s}`")), "{s:?}: {e}");
        }
    }

    /// Drives `bucket` from 0 to `end_ns`, polling at the times `step` picks and taking all that
    /// is available; returns the total taken.
    fn drive(
        bucket: &mut TokenBucket,
        end_ns: u64,
        mut step: impl FnMut(&mut TokenBucket, u64) -> u64,
    ) -> u64 {
        let mut now = 0;
        let mut total = 0;
        loop {
            total += bucket.take(now, usize::MAX) as u64;
            if now == end_ns {
                return total;
            }
            now = step(bucket, now).clamp(now + 1, end_ns);
        }
    }

    fn assert_exact(pps: f64, total: u64, secs: f64) {
        let expected = pps * secs;
        assert!((total as f64 - expected).abs() <= 1.0, "{pps} pps: {total} != {expected}");
    }

    #[test]
    fn token_bucket_is_exact_when_polled_at_ready_times() {
        for pps in [50_000.0, 1_488_100.0, rate("10gbps").pps(64.0).unwrap() / 10.0] {
            let mut b = TokenBucket::new(pps, 32);
            let total = drive(&mut b, 10_000_000_000, |b, now| b.next_ready_ns(now));
            assert_exact(pps, total, 10.0);
        }
    }

    #[test]
    fn token_bucket_is_exact_when_polled_irregularly() {
        for pps in [50_000.0, 1_488_100.0] {
            // Steps of 1..=20 us from a fixed LCG: 20 us at 1.4881 Mpps is ~30 packets < burst.
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            let mut b = TokenBucket::new(pps, 64);
            let total = drive(&mut b, 10_000_000_000, |_, now| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                now + 1_000 + (seed >> 33) % 19_001
            });
            assert_exact(pps, total, 10.0);
        }
    }

    #[test]
    fn token_bucket_next_ready_is_tight() {
        for pps in [1.0, 3.0, 50_000.0, 1_488_100.0, 14_880_952.38] {
            let mut b = TokenBucket::new(pps, 8);
            let mut now = 1_000_000; // an arbitrary clock origin
            assert_eq!(b.take(now, 1), 0, "the bucket starts empty");
            for _ in 0..100 {
                let ready = b.next_ready_ns(now);
                assert!(ready > now);
                assert_eq!(b.clone().take(ready - 1, 1), 0, "{pps}: ready 1 ns early");
                assert_eq!(b.next_ready_ns(ready), ready);
                assert_eq!(b.take(ready, 1), 1, "{pps}");
                now = ready;
            }
        }
    }

    #[test]
    fn token_bucket_clock_starts_at_first_call() {
        let b = TokenBucket::new(1000.0, 4);
        assert_eq!(b.next_ready_ns(5_000), 1_005_000);
        let mut b = b;
        assert_eq!(b.take(1_004_999, 1), 0);
        assert_eq!(b.take(1_005_000, 1), 1);
        let mut b = TokenBucket::new(1000.0, 4);
        assert_eq!(b.take(u64::MAX - 10, 1), 0, "any clock origin");
        assert_eq!(b.next_ready_ns(u64::MAX - 10), u64::MAX, "saturates");
    }

    #[test]
    fn token_bucket_caps_burst_after_idle() {
        let mut b = TokenBucket::new(1000.0, 10);
        assert_eq!(b.take(0, 100), 0);
        // Idle for a whole second: 1000 tokens earned, only `burst` kept.
        assert_eq!(b.take(1_000_000_000, 1000), 10);
        assert_eq!(b.take(1_000_000_000, 1000), 0);
        assert_eq!(b.next_ready_ns(1_000_000_000), 1_001_000_000);
        assert_eq!(b.take(1_001_000_000, 1000), 1);
        // `want` limits a take and the rest stays.
        assert_eq!(b.take(1_011_000_000, 3), 3);
        assert_eq!(b.take(1_011_000_000, 100), 7);
        // Time going backwards earns nothing and does not panic.
        assert_eq!(b.take(5, 100), 0);
        assert_eq!(b.take(1_012_000_000, 100), 1);
        // A zero burst still lets packets through one at a time.
        let mut b = TokenBucket::new(1000.0, 0);
        b.take(0, 1);
        assert_eq!(b.take(1_000_000_000, 1000), 1);
    }

    #[test]
    #[should_panic(expected = "must be positive")]
    fn token_bucket_refuses_zero_rate() {
        TokenBucket::new(0.0, 1);
    }

    proptest! {
        #[test]
        fn rate_parser_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Rate>();
            let _ = parse_sizes(&s);
            let _ = parse_duration(&s);
        }

        /// Whatever the polling, the bucket never runs ahead of the rate and never hands out more
        /// than asked or than `burst`.
        #[test]
        fn token_bucket_never_exceeds_rate(
            pps in 1u64..100_000_000,
            burst in 1usize..256,
            steps in proptest::collection::vec((0u64..2_000_000, 0usize..512), 1..200),
        ) {
            let mut b = TokenBucket::new(pps as f64, burst);
            let (mut now, mut total) = (0u64, 0u128);
            b.take(0, 0);
            for (step, want) in steps {
                now += step;
                let n = b.take(now, want);
                prop_assert!(n <= want && n <= burst);
                total += n as u128;
                let allowed = u128::from(now) * u128::from(pps) / NS_PER_SEC;
                prop_assert!(total <= allowed, "{} > {}", total, allowed);
            }
        }

        /// Polled before `burst` tokens pile up and taking all, the bucket loses nothing: the
        /// total at every poll is exactly `floor(pps * elapsed)`, whatever the poll times.
        #[test]
        fn token_bucket_is_exact_under_any_polling(
            pps in 1u64..100_000_000,
            burst in 2usize..256,
            start in 0u64..1 << 62,
            steps in proptest::collection::vec(0.0f64..1.0, 1..200),
        ) {
            // Less than `burst - 1` tokens accrue per step, on top of less than one left over.
            let max_step = (burst as u128 - 1) * NS_PER_SEC / u128::from(pps);
            let mut b = TokenBucket::new(pps as f64, burst);
            let (mut elapsed, mut total) = (0u128, 0u128);
            b.take(start, 0);
            for frac in steps {
                elapsed += (frac * max_step as f64) as u128;
                total += b.take(start + elapsed as u64, usize::MAX) as u128;
                prop_assert_eq!(total, elapsed * u128::from(pps) / NS_PER_SEC);
            }
        }
    }
}
