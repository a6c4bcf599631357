//! Identifiers the core uses: dense indices for zones and nodes, and room keys.

use std::fmt;
use std::sync::Arc;

/// A zone of the fleet, by its position in [`crate::core::FleetRules::zones`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId(pub u8);

/// A node of the snapshot. Ids are never reused within one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A room, by its API identity (`namespace/name` in a cluster, a generated name in the
/// simulator).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey(pub Arc<str>);

impl RoomKey {
    /// A key from any string.
    pub fn new(key: impl AsRef<str>) -> Self {
        Self(Arc::from(key.as_ref()))
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of zones, as a bit mask over [`ZoneId`]s. A fleet has at most [`ZoneMask::CAPACITY`]
/// zones (the API allows 16).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ZoneMask(pub u64);

impl ZoneMask {
    /// Most zones a fleet can have.
    pub const CAPACITY: usize = 64;
    /// No zone.
    pub const EMPTY: Self = Self(0);

    /// The set holding only `zone`.
    pub fn single(zone: ZoneId) -> Self {
        Self(1u64 << zone.0)
    }

    /// The first `n` zones.
    pub fn first(n: usize) -> Self {
        if n >= Self::CAPACITY {
            Self(u64::MAX)
        } else {
            Self((1u64 << n) - 1)
        }
    }

    /// Whether `zone` is in the set.
    pub fn contains(self, zone: ZoneId) -> bool {
        self.0 & (1u64 << zone.0) != 0
    }

    /// The set with `zone` added.
    #[must_use]
    pub fn with(self, zone: ZoneId) -> Self {
        Self(self.0 | (1u64 << zone.0))
    }

    /// Zones in both sets.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// Zones in `self` but not in `other`.
    #[must_use]
    pub fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The zones of the set, in id order.
    pub fn iter(self) -> impl Iterator<Item = ZoneId> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let z = bits.trailing_zeros();
            bits &= bits - 1;
            Some(ZoneId(z as u8))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_set_operations() {
        let m = ZoneMask::EMPTY.with(ZoneId(0)).with(ZoneId(3));
        assert!(m.contains(ZoneId(3)) && !m.contains(ZoneId(1)));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![ZoneId(0), ZoneId(3)]);
        assert_eq!(
            ZoneMask::first(3).minus(m),
            ZoneMask::EMPTY.with(ZoneId(1)).with(ZoneId(2))
        );
        assert_eq!(ZoneMask::first(64).0, u64::MAX);
        assert!(
            ZoneMask::first(2)
                .and(ZoneMask::single(ZoneId(5)))
                .is_empty()
        );
    }
}
