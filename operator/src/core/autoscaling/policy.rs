//! A fleet's autoscaling settings, read once and checked: buffers, windows, delay, bounds.

use std::time::Duration;

use jiff::Timestamp;
use ruche_crds::MediaFleetSpec;
use ruche_crds::fleet::{AutoscalingSpec, ZoneSpec};

use super::schedule::{ScheduleError, Window};
use crate::core::share::{Share, ShareError};
use crate::core::snapshot::ZoneRules;

/// Settings the autoscaler cannot use; the fleet then keeps its size, and says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `bufferSlots` is unreadable.
    #[error("bufferSlots {0}")]
    Buffer(ShareError),
    /// A window is unusable.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A buffer no zone could ever keep.
    #[error(
        "{what} of {buffer} slots is more than zone {zone} can ever hold ({capacity} slots: maxNodes × capacity.slots)"
    )]
    BufferAboveCapacity {
        /// `bufferSlots` or the window's name.
        what: String,
        /// The buffer.
        buffer: u32,
        /// The zone.
        zone: String,
        /// Its most slots.
        capacity: u64,
    },
}

/// What the autoscaler keeps, and within which bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Free slots each zone keeps outside the windows.
    pub buffer: Share,
    /// Windows with their own buffer.
    pub windows: Vec<Window>,
    /// How long a zone must have a node too many before one goes.
    pub scale_down_delay: Duration,
    /// Slots of one node.
    pub node_slots: u32,
    /// Keep room in the other zones for the rooms of any one zone.
    pub zone_reserve: bool,
    /// The zones, with their bounds, in the fleet's order.
    pub zones: Vec<ZoneRules>,
}

impl Policy {
    /// The policy of a fleet, or `None` when it does not autoscale.
    pub fn of_fleet(spec: &MediaFleetSpec) -> Result<Option<Self>, PolicyError> {
        let Some(auto) = spec.autoscaling.as_ref() else {
            return Ok(None);
        };
        Self::of_settings(auto, &spec.zones, spec.capacity.slots)
    }

    /// The policy of autoscaling settings over `zones` of nodes of `node_slots` slots.
    pub fn of_settings(
        auto: &AutoscalingSpec,
        zones: &[ZoneSpec],
        node_slots: u32,
    ) -> Result<Option<Self>, PolicyError> {
        let policy = Self {
            buffer: Share::parse(&auto.buffer_slots).map_err(PolicyError::Buffer)?,
            windows: auto
                .schedules
                .iter()
                .map(Window::parse)
                .collect::<Result<_, _>>()?,
            scale_down_delay: auto.scale_down_delay.into(),
            node_slots,
            zone_reserve: auto.zone_failure_reserve,
            zones: zones
                .iter()
                .map(|z| ZoneRules {
                    name: z.name.clone(),
                    min_nodes: z.min_nodes.min(z.max_nodes),
                    max_nodes: z.max_nodes,
                })
                .collect(),
        };
        policy.check()?;
        Ok(Some(policy))
    }

    /// Refuses a count buffer larger than a zone's largest size.
    fn check(&self) -> Result<(), PolicyError> {
        let buffers = std::iter::once(("bufferSlots".to_string(), self.buffer)).chain(
            self.windows
                .iter()
                .map(|w| (format!("schedule {}", w.name), w.buffer)),
        );
        for (what, buffer) in buffers {
            let Share::Count(buffer) = buffer else {
                continue;
            };
            for zone in &self.zones {
                let capacity = u64::from(zone.max_nodes) * u64::from(self.node_slots);
                if u64::from(buffer) > capacity {
                    return Err(PolicyError::BufferAboveCapacity {
                        what,
                        buffer,
                        zone: zone.name.clone(),
                        capacity,
                    });
                }
            }
        }
        Ok(())
    }

    /// The free slots a zone whose rooms use `used` slots keeps at `now`, and the window that
    /// sets it (the largest of the open windows, or none: the base buffer).
    pub fn buffer_at(&self, now: Timestamp, used: u32) -> (u32, Option<&str>) {
        self.windows
            .iter()
            .filter(|w| w.contains(now))
            .map(|w| (w.buffer.of(used, true), Some(w.name.as_str())))
            .max_by_key(|(slots, _)| *slots)
            .unwrap_or((self.buffer.of(used, true), None))
    }
}
