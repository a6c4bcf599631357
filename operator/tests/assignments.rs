//! Every media node's assignment list converges to the operator's, however its pushes fare:
//! lost before the node sees them, lost after it applied them, delayed, and overtaken by late
//! copies of older lists (a retry that arrives last, a deposed leader still writing). The
//! node here models the real one's rule — it refuses a list older than the one it holds —
//! and nothing else: the agents, the registry and their versions are the real ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use ruche_crds::NodePhase;
use ruche_crds::admin::{Accepted, Assignment, AssignmentList, ListVersion, StaleList};
use ruche_operator::controller::admin::{AdminError, AdminTarget, NodeAdmin, NodeReport};
use ruche_operator::state::keys::NodeKey;
use ruche_operator::state::placements::Decision;
use support::{context_with_settings, fleet, node, room, serve_tokens, test_settings};

/// What one node holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Held {
    version: ListVersion,
    rooms: Vec<Assignment>,
}

/// Media nodes whose admin API loses, delays and reorders pushes, seeded.
#[derive(Clone)]
struct UnreliableNodes {
    held: Arc<Mutex<BTreeMap<String, Held>>>,
    rng: Arc<Mutex<ChaCha8Rng>>,
    calls: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl UnreliableNodes {
    fn new(seed: u64) -> Self {
        Self {
            held: Arc::default(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
            calls: Arc::default(),
            refused: Arc::default(),
            failed: Arc::default(),
        }
    }

    fn roll(&self) -> u32 {
        self.rng.lock().unwrap().next_u32() % 100
    }

    /// The node's rule: take the list unless it is older than the one held.
    fn apply(&self, url: &str, list: &AssignmentList) -> Result<Accepted, StaleList> {
        let mut held = self.held.lock().unwrap();
        let h = held.entry(url.to_string()).or_default();
        if StaleList::refuses(h.version, list.version) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(StaleList {
                current: h.version,
                refused: list.version,
            });
        }
        h.version = list.version;
        h.rooms.clone_from(&list.rooms);
        Ok(Accepted {
            version: list.version,
            assigned: list.rooms.len(),
            ended: Vec::new(),
        })
    }
}

impl NodeAdmin for UnreliableNodes {
    async fn assign(
        &self,
        target: &AdminTarget,
        list: &AssignmentList,
    ) -> Result<Accepted, AdminError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let reset = || AdminError::Unreachable {
            url: target.url.clone(),
            message: "connection reset".into(),
        };
        let (fate, delay) = (self.roll(), self.roll());
        if fate < 50 {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(u64::from(delay % 15))).await;
        match fate {
            // Lost on the way: the node never sees it.
            0..20 => Err(reset()),
            // Applied, but the answer is lost.
            20..40 => {
                let _ = self.apply(&target.url, list);
                Err(reset())
            }
            // Applied after a long delay: later lists may overtake it and it is refused.
            40..50 => {
                let (nodes, url, list) = (self.clone(), target.url.clone(), list.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    let _ = nodes.apply(&url, &list);
                });
                Err(reset())
            }
            _ => self
                .apply(&target.url, list)
                .map_err(|stale| AdminError::Stale {
                    url: target.url.clone(),
                    stale,
                }),
        }
    }

    async fn report(&self, target: &AdminTarget) -> Result<NodeReport, AdminError> {
        Err(AdminError::Unreachable {
            url: target.url.clone(),
            message: "not polled in this test".into(),
        })
    }

    async fn drain(&self, _: &AdminTarget, _: Option<Duration>) -> Result<(), AdminError> {
        Ok(())
    }

    async fn migrate(&self, _: &AdminTarget, _: &str, _: &str) -> Result<u32, AdminError> {
        Ok(0)
    }

    async fn undrain(&self, _: &AdminTarget) -> Result<(), AdminError> {
        Ok(())
    }

    async fn advertise(&self, _: &AdminTarget, _: &str) -> Result<(), AdminError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_converges_to_its_list_whatever_happens_to_the_pushes() {
    for seed in [1_u64, 7, 2026] {
        converges(seed).await;
    }
}

async fn converges(seed: u64) {
    let nodes = UnreliableNodes::new(seed);
    let names = ["a1", "a2", "a3", "a4"];
    let (ctx, api) = context_with_settings(
        vec![fleet()],
        names
            .iter()
            .enumerate()
            .map(|(i, n)| node(n, &format!("10.0.0.{}", i + 1), NodePhase::Ready))
            .collect(),
        vec![],
        vec![],
        nodes.clone(),
        test_settings(),
    );
    let _tokens = serve_tokens(api);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut live = Vec::new();
    // A burst of placements and deletions, many on the same node at once.
    for i in 0..300 {
        if !live.is_empty() && rng.next_u32() % 3 == 0 {
            let gone: ruche_crds::Room = live.swap_remove(rng.next_u32() as usize % live.len());
            let effects = ctx.registry().delete_room(&gone);
            ctx.dispatch(effects);
        } else {
            let r = Arc::new(room(&format!("r{i}"), 1 + rng.next_u32() % 8));
            ctx.registry().apply_room(r.clone());
            let (decision, effects) = ctx.registry().decide(&r).unwrap();
            ctx.dispatch(effects);
            if matches!(decision, Decision::Placed { .. }) {
                live.push((*r).clone());
            }
        }
        // Late copies of old lists, as a retry overtaken by newer ones would arrive.
        if i % 25 == 0 {
            let key = NodeKey::new("ns", names[i % names.len()]);
            if let Some((version, _)) = ctx.registry().list(&key) {
                let old = AssignmentList {
                    version: ListVersion::new(version.epoch(), version.seq() / 2),
                    rooms: Vec::new(),
                };
                let url = format!("http://10.0.0.{}:7881", i % names.len() + 1);
                let _ = nodes.apply(&url, &old);
            }
        }
        // Let the agents push some of the intermediate lists, so that pushes overlap.
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    // A leader of an earlier epoch, still writing: refused.
    let deposed = AssignmentList {
        version: ListVersion::new(0, 1_000_000),
        rooms: Vec::new(),
    };
    assert!(nodes.apply("http://10.0.0.1:7881", &deposed).is_err());

    let expected = || -> BTreeMap<String, Held> {
        let registry = ctx.registry();
        names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                let (version, rooms) = registry.list(&NodeKey::new("ns", *n))?;
                Some((
                    format!("http://10.0.0.{}:7881", i + 1),
                    Held { version, rooms },
                ))
            })
            .collect()
    };
    let mut converged = false;
    for _ in 0..500 {
        if *nodes.held.lock().unwrap() == expected() {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = nodes.held.lock().unwrap().clone();
    assert!(
        converged,
        "seed {seed}: the nodes hold {held:#?}, the operator says {:#?}",
        expected()
    );
    let placed: usize = held.values().map(|h| h.rooms.len()).sum();
    assert_eq!(
        placed,
        live.len(),
        "seed {seed}: every live room on exactly one node"
    );
    let failed = nodes.failed.load(Ordering::Relaxed);
    assert!(
        failed > 10,
        "seed {seed}: the pushes were put to the test ({failed} lost)"
    );
    eprintln!(
        "seed {seed}: {} pushes for {} list versions, {failed} lost or delayed, {} refused as stale; every node converged",
        nodes.calls.load(Ordering::Relaxed),
        expected().values().map(|h| h.version.seq()).sum::<u32>(),
        nodes.refused.load(Ordering::Relaxed)
    );
}
