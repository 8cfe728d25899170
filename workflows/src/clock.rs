//! The business clock: the time in which a promotion's window, the policy's durations and every
//! deadline are written. It runs `scale` times faster than the server's clock from `origin` (the
//! run's start), so that a two-week promotion can be rehearsed in minutes (`scale` 1 in
//! production). It counts whole server seconds.
//!
//! Pure arithmetic, shared by the workflow (its waits) and by `promo.watch_window` (whose rounds
//! fall on server time), so that both read the same instant from the same second.

use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A business clock: business = origin + (server − origin) × scale, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessClock {
    /// Server time (Unix seconds) at which the two clocks agree: the run's start.
    pub origin: i64,
    /// Business seconds per server second (at least 1).
    pub scale: u32,
}

impl BusinessClock {
    /// A clock from `origin` at `scale` (0 is read as 1).
    pub fn new(origin: i64, scale: u32) -> Self {
        Self { origin, scale: scale.max(1) }
    }

    fn scale(self) -> i64 {
        i64::from(self.scale.max(1))
    }

    /// The business instant of server second `server` (saturating: far-off instants stay
    /// ordered instead of wrapping).
    pub fn business_at(self, server: i64) -> i64 {
        self.origin.saturating_add(server.saturating_sub(self.origin).saturating_mul(self.scale()))
    }

    /// The business instant of server time `t`.
    pub fn business_at_time(self, t: SystemTime) -> i64 {
        self.business_at(unix(t))
    }

    /// The first server second at which the clock reads `at` or later. Waiting until the whole
    /// second (rather than the exact fraction) matters: a wait measured from a fraction could end
    /// just before the second turns, find the instant not reached, and wait again for a few
    /// milliseconds at a time.
    pub fn server_second_of(self, at: i64) -> i64 {
        let ahead = at.saturating_sub(self.origin).max(0) as u64;
        self.origin.saturating_add(ahead.div_ceil(self.scale() as u64) as i64)
    }

    /// How long from server time `now` until the clock reads `at` (zero when it already does).
    pub fn until(self, now: SystemTime, at: i64) -> Duration {
        let second = UNIX_EPOCH + Duration::from_secs(self.server_second_of(at).max(0) as u64);
        second.duration_since(now).unwrap_or_default()
    }

    /// A business duration as server time on the workflow's timers.
    pub fn scaled(self, business: Duration) -> Duration {
        business / self.scale.max(1)
    }
}

/// Unix seconds of `t` (0 before the epoch).
pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs().min(i64::MAX as u64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn business_time_runs_scale_times_faster_from_the_origin() {
        let c = BusinessClock::new(1_000_000, 43_200);
        assert_eq!(c.business_at(1_000_000), 1_000_000);
        assert_eq!(c.business_at(1_000_002), 1_000_000 + 2 * 43_200);
        assert_eq!(c.scaled(Duration::from_secs(86_400)), Duration::from_secs(2));
        assert_eq!(BusinessClock::new(5, 0).scale, 1, "a scale of 0 reads as 1");
    }

    #[test]
    fn far_off_instants_saturate_instead_of_wrapping() {
        let c = BusinessClock::new(0, u32::MAX);
        assert_eq!(c.business_at(i64::MAX), i64::MAX);
        assert_eq!(c.server_second_of(i64::MAX), (i64::MAX as u64).div_ceil(u32::MAX as u64) as i64);
        assert_eq!(c.until(UNIX_EPOCH, i64::MIN), Duration::ZERO);
    }

    proptest! {
        /// The server second of a business instant is the first at which the clock reads it.
        #[test]
        fn the_server_second_is_the_first_that_reaches_the_instant(
            origin in 0i64..2_000_000_000,
            scale in 1u32..100_000,
            ahead in 0i64..10_000_000_000,
        ) {
            let c = BusinessClock::new(origin, scale);
            let at = origin + ahead;
            let second = c.server_second_of(at);
            prop_assert!(c.business_at(second) >= at);
            prop_assert!(second == origin || c.business_at(second - 1) < at);
        }
    }
}
