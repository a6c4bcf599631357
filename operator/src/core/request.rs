//! A room's needs, resolved against the fleet's zones.

use std::fmt;

use super::ids::{ZoneId, ZoneMask};
use super::snapshot::Snapshot;

/// What a room asks of placement. Built once per room with [`Snapshot::request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomRequest {
    /// Slots to reserve (expected participants).
    pub slots: u32,
    /// Zones the room may use (already limited to the fleet's zones).
    pub allowed: ZoneMask,
    /// Zones tried before the rest of `allowed`.
    pub preferred: ZoneMask,
    /// Zone tried first of all: where the room lived before its node failed, so that moving
    /// it keeps it close to its participants' network path.
    pub home: Option<ZoneId>,
}

/// A room names zones the fleet does not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct UnknownZones {
    /// The names not found.
    pub unknown: Vec<String>,
    /// The fleet's zones, for the message.
    pub known: Vec<String>,
}

impl fmt::Display for UnknownZones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.unknown.len() == 1 {
            "zone"
        } else {
            "zones"
        };
        write!(
            f,
            "{plural} {} not in the fleet (its zones are {})",
            self.unknown.join(", "),
            self.known.join(", ")
        )
    }
}

impl RoomRequest {
    /// The zones to try, best first: home, then preferred, then the rest of allowed.
    pub fn tiers(&self) -> [ZoneMask; 3] {
        let home = self
            .home
            .map_or(ZoneMask::EMPTY, ZoneMask::single)
            .and(self.allowed);
        let preferred = self.preferred.and(self.allowed).minus(home);
        let rest = self.allowed.minus(preferred).minus(home);
        [home, preferred, rest]
    }

    /// The same request, trying `zone` first.
    #[must_use]
    pub fn with_home(mut self, zone: ZoneId) -> Self {
        self.home = Some(zone);
        self
    }
}

impl Snapshot {
    /// A `Room`'s request: its slots and its zone rules, resolved.
    pub fn room_request(&self, spec: &ruche_crds::RoomSpec) -> Result<RoomRequest, UnknownZones> {
        self.request(spec.slots, &spec.zones.allowed, &spec.zones.preferred)
    }

    /// Resolves a room's zone names. Empty `allowed` means every zone of the fleet.
    pub fn request<S: AsRef<str>>(
        &self,
        slots: u32,
        allowed: &[S],
        preferred: &[S],
    ) -> Result<RoomRequest, UnknownZones> {
        let mut unknown = Vec::new();
        let mut resolve = |names: &[S]| {
            names.iter().fold(ZoneMask::EMPTY, |mask, n| {
                if let Some(z) = self.zone_id(n.as_ref()) {
                    return mask.with(z);
                }
                if !unknown.iter().any(|u: &String| u == n.as_ref()) {
                    unknown.push(n.as_ref().to_string());
                }
                mask
            })
        };
        let allowed_mask = if allowed.is_empty() {
            self.all_zones()
        } else {
            resolve(allowed)
        };
        let preferred_mask = resolve(preferred);
        if !unknown.is_empty() {
            return Err(UnknownZones {
                unknown,
                known: self.rules().zones.iter().map(|z| z.name.clone()).collect(),
            });
        }
        Ok(RoomRequest {
            slots,
            allowed: allowed_mask,
            preferred: preferred_mask,
            home: None,
        })
    }
}
