//! A token bucket on the pipeline clock, for ICMP errors (RFC 1812 4.3.2.8, RFC 4443 2.4(f)).

/// Allows `rate` events per second with bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_s: u64,
    burst: u64,
    /// Tokens scaled by 1e9 so refills are exact integers of nanoseconds.
    tokens_ns: u64,
    last_ns: u64,
}

impl TokenBucket {
    pub fn new(rate_per_s: u64, burst: u64) -> TokenBucket {
        TokenBucket { rate_per_s, burst, tokens_ns: burst * 1_000_000_000, last_ns: 0 }
    }

    /// Takes one token at time `now_ns` if there is one. Time going backwards refills nothing.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        let cap = self.burst * 1_000_000_000;
        self.tokens_ns =
            self.tokens_ns.saturating_add(elapsed.saturating_mul(self.rate_per_s)).min(cap);
        if self.tokens_ns >= 1_000_000_000 {
            self.tokens_ns -= 1_000_000_000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 3);
        let t0 = 5_000_000_000;
        assert!(b.allow(t0));
        assert!(b.allow(t0));
        assert!(b.allow(t0));
        assert!(!b.allow(t0));
        // 100 ms later: one more token at 10/s.
        assert!(b.allow(t0 + 100_000_000));
        assert!(!b.allow(t0 + 100_000_000));
        // A long pause refills only up to the burst.
        let t1 = t0 + 60_000_000_000;
        assert!((0..3).all(|_| b.allow(t1)));
        assert!(!b.allow(t1));
    }
}
