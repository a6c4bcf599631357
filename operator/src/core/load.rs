//! Reservation-aware accounting of a node's slots.
//!
//! A room reserves its expected slots the instant it is placed, long before any participant
//! shows up in a load report. Measured load (participants the node reports) can only raise
//! the figure the placement uses, never hide a fresh reservation: stale reports are what send
//! dozens of joins to one bridge in a few seconds.

/// Slots of one node: what rooms reserved and what the node last reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Slots reserved by the rooms placed on the node.
    pub reserved: u32,
    /// Slots in use according to the node's last report (participants connected).
    pub measured: u32,
}

impl Load {
    /// Slots counted as taken: the higher of reserved and measured.
    pub fn used(self) -> u32 {
        self.reserved.max(self.measured)
    }

    /// Slots still free out of `capacity`.
    pub fn free(self, capacity: u32) -> u32 {
        capacity.saturating_sub(self.used())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_low_report_never_hides_a_fresh_reservation() {
        let l = Load {
            reserved: 40,
            measured: 3,
        };
        assert_eq!(l.used(), 40);
        assert_eq!(l.free(100), 60);
    }

    #[test]
    fn measured_overflow_raises_use() {
        let l = Load {
            reserved: 10,
            measured: 25,
        };
        assert_eq!(l.used(), 25);
        assert_eq!(l.free(20), 0);
    }
}
