//! A budget of writes per second shared by many objects (a token bucket): the load counters of
//! a thousand media nodes refreshed without the API server ever seeing more than a few such
//! writes a second, whatever the size of the fleet.

use std::time::{Duration, Instant};

/// Up to `per_second` writes a second on average, in bursts of at most `per_second`.
#[derive(Clone, Debug)]
pub struct Budget {
    per_second: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl Budget {
    /// A budget of `per_second` writes a second, full at first.
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second,
            tokens: per_second,
            at: None,
        }
    }

    /// Takes one write from the budget if it has one at `now`; otherwise says how long until
    /// it will.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = self
            .at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        self.at = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_second).min(self.per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        } else {
            Err(Duration::from_secs(60))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(2.0);
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Ok(()));
        assert_eq!(b.take(t0), Err(Duration::from_millis(500)));
        assert_eq!(b.take(t0 + Duration::from_millis(500)), Ok(()));
        assert!(b.take(t0 + Duration::from_millis(600)).is_err());
        // A long quiet spell does not save up more than one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(later), Ok(()));
        assert_eq!(b.take(later), Ok(()));
        assert!(b.take(later).is_err());
    }
}
