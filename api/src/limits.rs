//! Limits on what one caller may ask: a request rate per caller (the token's subject, or the
//! peer address for anonymous requests). Body size, query depth and complexity, and page
//! sizes are limited where those are handled (http, graphql, queries).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A token bucket per caller.
pub struct CallerRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl CallerRateLimiter {
    /// `per_second` sustained, `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> CallerRateLimiter {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(per_second).max(1)).expect("at least 1");
        CallerRateLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Ok` when the caller may go on; otherwise how long to wait.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        self.limiter.check_key(&caller.to_owned()).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets callers whose buckets are full again (keeps memory bounded).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_burst_waits_and_others_do_not() {
        let limiter = CallerRateLimiter::new(1, 3);
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
        }
        let wait = limiter.check("alice").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter.check("bob").is_ok(), "buckets are per caller");
    }
}
