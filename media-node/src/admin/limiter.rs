//! A limit on failed admin API authentications, per client address, so the bearer token cannot
//! be guessed at the rate a network allows.
//!
//! Each address has a budget of [`BURST`] failures that refills at one per [`REFILL`] (a
//! generic cell rate: the address's "next free" instant moves forward by `REFILL` on each
//! failure). An address over budget is answered 429 with `Retry-After` before its token is even
//! compared; successful requests cost nothing, so the operator, which always presents the right
//! token, never meets the limit, and an attacker elsewhere cannot lock it out (only its own
//! address is limited). The table is bounded: when it is full of addresses still limited, new
//! addresses share one entry, so it holds at most [`MAX_ADDRESSES`] and that one.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// Failures an address may make in a row before it is limited.
pub const BURST: u32 = 10;
/// Time for one failure to be forgiven.
pub const REFILL: Duration = Duration::from_secs(1);
/// Addresses tracked at most.
pub const MAX_ADDRESSES: usize = 4096;

/// The address new addresses share once the table is full.
const OVERFLOW: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// Failures by address.
#[derive(Debug)]
pub struct FailureLimiter {
    next_free: HashMap<IpAddr, Instant>,
    burst: u32,
    refill: Duration,
    capacity: usize,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        Self::new(BURST, REFILL, MAX_ADDRESSES)
    }
}

impl FailureLimiter {
    /// A limiter allowing `burst` failures, one more per `refill`, over `capacity` addresses.
    pub fn new(burst: u32, refill: Duration, capacity: usize) -> Self {
        Self {
            next_free: HashMap::new(),
            burst: burst.max(1),
            refill,
            capacity: capacity.max(1),
        }
    }

    /// `None` if `address` may try at `now`, else how long until it may.
    pub fn wait(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let next_free = self
            .next_free
            .get(&address)
            .or_else(|| self.next_free.get(&OVERFLOW).filter(|_| self.is_full()))?;
        // Each failure moves `next_free` one refill further; an address may fail while it is
        // no more than `burst - 1` refills ahead of now, so `burst` failures in a row spend it.
        let tolerance = self.refill * (self.burst - 1);
        let ahead = next_free.saturating_duration_since(now);
        ahead.checked_sub(tolerance).filter(|over| !over.is_zero())
    }

    /// Records a failure from `address` at `now`.
    pub fn failed(&mut self, address: IpAddr, now: Instant) {
        let key = if self.next_free.contains_key(&address) {
            address
        } else {
            if self.is_full() {
                self.next_free.retain(|_, next_free| *next_free > now);
            }
            if self.is_full() { OVERFLOW } else { address }
        };
        let next_free = self.next_free.entry(key).or_insert(now);
        *next_free = (*next_free).max(now) + self.refill;
    }

    /// Addresses tracked.
    pub fn len(&self) -> usize {
        self.next_free.len()
    }

    /// Whether no address is tracked.
    pub fn is_empty(&self) -> bool {
        self.next_free.is_empty()
    }

    fn is_full(&self) -> bool {
        self.next_free.len() >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn an_address_is_limited_after_its_burst_then_forgiven_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut limiter = FailureLimiter::default();
        for _ in 0..BURST {
            assert_eq!(limiter.wait(ip(1), t0), None);
            limiter.failed(ip(1), t0);
        }
        assert_eq!(limiter.wait(ip(1), t0), Some(REFILL));
        // Another address is not affected.
        assert_eq!(limiter.wait(ip(2), t0), None);
        // One refill later, one more try.
        assert_eq!(limiter.wait(ip(1), t0 + REFILL), None);
        limiter.failed(ip(1), t0 + REFILL);
        assert_eq!(limiter.wait(ip(1), t0 + REFILL), Some(REFILL));
        // After the whole budget's time, the full burst again.
        let later = t0 + REFILL * (BURST + 1);
        for _ in 0..BURST {
            assert_eq!(limiter.wait(ip(1), later), None);
            limiter.failed(ip(1), later);
        }
        assert!(limiter.wait(ip(1), later).is_some());
    }

    #[test]
    fn a_sustained_guesser_gets_one_try_per_refill() {
        let t0 = Instant::now();
        let mut limiter = FailureLimiter::default();
        let mut tries = 0;
        // Ten minutes of trying every 10 ms.
        for step in 0..60_000u32 {
            let now = t0 + Duration::from_millis(10) * step;
            if limiter.wait(ip(9), now).is_none() {
                limiter.failed(ip(9), now);
                tries += 1;
            }
        }
        assert!((600..=600 + BURST).contains(&tries), "{tries} tries");
    }

    #[test]
    fn a_full_table_sheds_recovered_addresses_then_shares_one_entry() {
        let t0 = Instant::now();
        let mut limiter = FailureLimiter::new(2, REFILL, 3);
        for last in 1..=3 {
            limiter.failed(ip(last), t0);
        }
        assert_eq!(limiter.len(), 3);
        // Later, the three have recovered and are shed to make room.
        let later = t0 + REFILL * 5;
        limiter.failed(ip(4), later);
        assert_eq!(limiter.len(), 1);
        // Fill with addresses still limited; a new one goes to the shared entry, and is
        // limited with the other newcomers once that entry's budget is spent.
        limiter.failed(ip(5), later);
        limiter.failed(ip(6), later);
        limiter.failed(ip(7), later);
        limiter.failed(ip(8), later);
        assert_eq!(limiter.len(), 3 + 1, "three addresses and the shared entry");
        assert_eq!(limiter.wait(ip(200), later), Some(REFILL));
        // Addresses with their own entry keep their own budget.
        assert_eq!(limiter.wait(ip(5), later), None);
    }
}
