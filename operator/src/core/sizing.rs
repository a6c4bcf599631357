//! How many media nodes each zone should run.
//!
//! `spec.replicas` (what `kubectl scale` sets) is spread as evenly as the zones' bounds allow;
//! without it, each zone runs its `minNodes`. The result always lies within every zone's bounds,
//! so a replica count outside the fleet's range is clamped rather than refused (the API's CEL
//! rules refuse it at admission already).

use super::snapshot::ZoneRules;

/// Desired node count per zone, in the order of `zones`.
pub fn desired_nodes(zones: &[ZoneRules], replicas: Option<u32>) -> Vec<u32> {
    let mut counts: Vec<u32> = zones.iter().map(|z| z.min_nodes.min(z.max_nodes)).collect();
    let Some(replicas) = replicas else {
        return counts;
    };
    let ceiling: u64 = zones.iter().map(|z| u64::from(z.max_nodes)).sum();
    let floor: u64 = counts.iter().map(|c| u64::from(*c)).sum();
    let mut left = u64::from(replicas).clamp(floor, ceiling) - floor;
    // Hand out one node at a time to the zone with the fewest that can still grow; ties go to
    // the zone listed first. Zones are few (at most 16), so this stays cheap.
    while left > 0 {
        let Some(z) = (0..zones.len())
            .filter(|&z| counts[z] < zones[z].max_nodes)
            .min_by_key(|&z| (counts[z], z))
        else {
            break;
        };
        counts[z] += 1;
        left -= 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zones(bounds: &[(u32, u32)]) -> Vec<ZoneRules> {
        bounds
            .iter()
            .enumerate()
            .map(|(i, (min, max))| ZoneRules {
                name: format!("z{i}"),
                min_nodes: *min,
                max_nodes: *max,
            })
            .collect()
    }

    #[test]
    fn without_replicas_each_zone_runs_its_minimum() {
        assert_eq!(
            desired_nodes(&zones(&[(2, 5), (0, 5), (3, 3)]), None),
            vec![2, 0, 3]
        );
    }

    #[test]
    fn replicas_spread_evenly_within_bounds() {
        assert_eq!(
            desired_nodes(&zones(&[(0, 10), (0, 10), (0, 10)]), Some(10)),
            vec![4, 3, 3]
        );
        assert_eq!(
            desired_nodes(&zones(&[(0, 2), (0, 10), (0, 10)]), Some(10)),
            vec![2, 4, 4]
        );
        assert_eq!(
            desired_nodes(&zones(&[(3, 10), (0, 10)]), Some(4)),
            vec![3, 1]
        );
        // Outside the fleet's range: clamped.
        assert_eq!(
            desired_nodes(&zones(&[(1, 2), (1, 2)]), Some(1)),
            vec![1, 1]
        );
        assert_eq!(
            desired_nodes(&zones(&[(1, 2), (1, 2)]), Some(9)),
            vec![2, 2]
        );
    }

    proptest! {
        #[test]
        fn counts_stay_in_bounds_and_sum_to_the_clamped_replicas(
            bounds in proptest::collection::vec((0u32..8, 0u32..12), 1..6),
            replicas in proptest::option::of(0u32..80),
        ) {
            let zs = zones(&bounds.iter().map(|(a, b)| (*a.min(b), *a.max(b))).collect::<Vec<_>>());
            let counts = desired_nodes(&zs, replicas);
            let floor: u32 = zs.iter().map(|z| z.min_nodes).sum();
            let ceiling: u32 = zs.iter().map(|z| z.max_nodes).sum();
            for (c, z) in counts.iter().zip(&zs) {
                prop_assert!(*c >= z.min_nodes && *c <= z.max_nodes);
            }
            let total: u32 = counts.iter().sum();
            prop_assert_eq!(total, replicas.map_or(floor, |r| r.clamp(floor, ceiling)));
            // Even: a zone below another by two or more must be at its maximum, or the other at
            // its minimum.
            for (i, a) in counts.iter().enumerate() {
                for (j, b) in counts.iter().enumerate() {
                    if *a + 1 < *b {
                        prop_assert!(*a == zs[i].max_nodes || *b == zs[j].min_nodes, "{counts:?} {zs:?}");
                    }
                }
            }
        }
    }
}
