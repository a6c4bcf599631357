//! The faults, each injected into the world and judged over its window.

use super::*;

/// Everything the faults act on. The replicas come first: fields drop in order, and the
/// operators must be gone before the scenario's namespace and RBAC are deleted.
pub(super) struct World {
    pub(super) replicas: Arc<Replicas>,
    pub(super) env: TestEnv,
    pub(super) control: ControlPlane,
    pub(super) began: Instant,
    pub(super) watched: Vec<String>,
    pub(super) parts: Vec<(String, Shared<PartState>)>,
    pub(super) samples: Shared<Vec<Sample>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) reports: Vec<FaultReport>,
    pub(super) notes: Vec<String>,
}

impl World {
    pub(super) fn now(&self) -> Duration {
        self.began.elapsed()
    }

    /// Watched rooms by node, from the API.
    pub(super) async fn rooms_by_node(&self) -> BTreeMap<String, BTreeSet<String>> {
        let rooms = self.env.rooms().await.expect("rooms are listed");
        let mut by_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rooms
            .iter()
            .filter(|r| self.watched.contains(&r.name_any()))
        {
            if let Some(node) = fixtures::node_of(r) {
                by_node
                    .entry(node.to_string())
                    .or_default()
                    .insert(r.name_any());
            }
        }
        by_node
    }

    /// The node hosting the most live rooms (a live room's media is the sharpest witness).
    pub(super) async fn busiest_node(&self) -> (MediaNode, BTreeSet<String>) {
        let by_node = self.rooms_by_node().await;
        let live: BTreeSet<&String> = self.parts.iter().map(|(r, _)| r).collect();
        let (name, rooms) = by_node
            .iter()
            .max_by_key(|(_, rooms)| {
                (
                    rooms.iter().filter(|r| live.contains(r)).count(),
                    rooms.len(),
                )
            })
            .expect("rooms are placed");
        let node = self
            .env
            .api::<MediaNode>()
            .get(name)
            .await
            .expect("the node is read");
        (node, rooms.clone())
    }

    pub(super) fn pod_of(node: &MediaNode) -> String {
        node.status
            .as_ref()
            .and_then(|s| s.pod.clone())
            .unwrap_or_else(|| node.name_any())
    }

    /// Waits until everything has been settled for [`SETTLED_FOR`] samples in a row after
    /// `healed` (or [`SETTLE_TIMEOUT`] passed), then judges the window.
    pub(super) async fn judge(
        &mut self,
        fault: &str,
        injected: Duration,
        healed: Duration,
        excused: BTreeSet<String>,
    ) {
        let give_up = self.began + healed + SETTLE_TIMEOUT;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let samples = self.samples.lock().unwrap();
            let recent: Vec<&Sample> = samples.iter().rev().take(SETTLED_FOR).collect();
            if recent.len() == SETTLED_FOR
                && recent
                    .iter()
                    .all(|s| s.unsettled.is_none() && s.at > healed)
            {
                break;
            }
            if Instant::now() > give_up {
                break;
            }
        }
        let window = Window {
            fault: fault.to_string(),
            injected,
            healed,
            end: self.now(),
            excused,
            bound: BOUND,
        };
        let (report, last) = {
            let samples = self.samples.lock().unwrap();
            let last = samples.last().and_then(|s| s.unsettled.clone());
            (verdict::judge(&window, &samples), last)
        };
        eprintln!(
            "chaos: {fault}: {} room(s) affected ({} on failed nodes), {} lost, recovered after {:?}, longest room outage {:?}",
            report.affected.len(),
            report.on_failed_nodes,
            report.lost.len(),
            report.recovered_after,
            report.longest_outage
        );
        let unsettled = report.recovered_after.is_none();
        self.reports.push(report);
        assert!(
            !unsettled,
            "{fault}: not settled {SETTLE_TIMEOUT:?} after it was healed (last: {}); the table so far:\n{}",
            last.unwrap_or_default(),
            verdict::table(&self.reports)
        );
    }

    pub(super) async fn control_plane_down(&mut self, component: Component, down: Duration) {
        let fault = format!("{} stopped for {} s", component.name(), down.as_secs());
        eprintln!("chaos: {fault}");
        let injected = self.now();
        let pid = self.control.stop(component).await.unwrap();
        eprintln!("chaos: {} (pid {pid}) killed", component.name());
        tokio::time::sleep(down).await;
        let began = Instant::now();
        let started = self.control.start().await.unwrap();
        eprintln!(
            "chaos: started again: {:?}, listening {:?} later",
            started.iter().map(|c| c.name()).collect::<Vec<_>>(),
            began.elapsed()
        );
        let healed = self.now();
        self.judge(&fault, injected, healed, BTreeSet::new()).await;
    }

    pub(super) async fn leader(&self) -> char {
        wait::until("a replica to lead", Duration::from_secs(60), || async {
            self.replicas
                .leader()
                .await
                .ok_or_else(|| "no leader".to_string())
        })
        .await
        .unwrap()
    }

    pub(super) async fn both_replicas_killed(&mut self) {
        let fault = "both operator replicas SIGKILLed";
        let injected = self.now();
        assert_eq!(self.replicas.kill_all(), 2);
        self.judge(fault, injected, injected, BTreeSet::new()).await;
    }

    pub(super) async fn leader_killed_mid_rollout(&mut self) {
        let fault = "leader SIGKILLed mid-rollout";
        let fleets = self.env.api::<MediaFleet>();
        let nodes = self.env.api::<MediaNode>();
        let old = fleets
            .get(FLEET)
            .await
            .unwrap()
            .status
            .and_then(|s| s.update_revision);
        let injected = self.now();
        fleets
            .patch(
                FLEET,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": { "template": { "image": "registry.invalid/ruche/media-node:chaos-v2" } } })),
            )
            .await
            .unwrap();
        // Mid-rollout: once a node of the new revision serves and an old one drains.
        let target = wait::until(
            "the rollout to be under way",
            Duration::from_secs(120),
            || async {
                let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
                let target = f
                    .status
                    .and_then(|s| s.update_revision)
                    .filter(|r| Some(r) != old.as_ref())
                    .ok_or_else(|| "no new revision yet".to_string())?;
                let list = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let phase = |n: &MediaNode| n.status.as_ref().map(|s| s.phase);
                let new_ready = list
                    .items
                    .iter()
                    .any(|n| n.spec.revision == target && phase(n) == Some(NodePhase::Ready));
                let draining = list
                    .items
                    .iter()
                    .any(|n| n.spec.revision != target && phase(n) == Some(NodePhase::Draining));
                (new_ready && draining)
                    .then_some(target)
                    .ok_or_else(|| "no old node draining beside a new one yet".to_string())
            },
        )
        .await
        .unwrap();
        let leader = self.leader().await;
        let healed = self.now();
        assert!(self.replicas.kill(leader));
        wait::until(
            "the rollout to finish",
            Duration::from_secs(300),
            || async {
                let list = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let done = list.items.len() == NODES
                    && list.items.iter().all(|n| {
                        n.spec.revision == target
                            && n.status.as_ref().map(|s| s.phase) == Some(NodePhase::Ready)
                    });
                done.then_some(())
                    .ok_or_else(|| format!("{} nodes", list.items.len()))
            },
        )
        .await
        .unwrap();
        self.notes.push(format!(
            "{fault}: the template changed at +{:.0} s, the leader was killed {:.0} s into the rollout, which finished {:.0} s after the change",
            injected.as_secs_f64(),
            healed.saturating_sub(injected).as_secs_f64(),
            self.now().saturating_sub(injected).as_secs_f64()
        ));
        self.judge(fault, injected, healed, BTreeSet::new()).await;
    }

    pub(super) async fn leader_killed_mid_migration(&mut self) {
        let fault = "leader SIGKILLed mid-migration";
        let (node, rooms) = self.busiest_node().await;
        let name = node.name_any();
        let nodes = self.env.api::<MediaNode>();
        let deadline = Timestamp::now()
            .checked_add(SignedDuration::from_secs(3))
            .unwrap();
        let drain = json!({ "spec": { "drain": { "deadline": Time(deadline), "mode": "Migrate", "reason": "Manual" } } });
        let injected = self.now();
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&drain))
            .await
            .unwrap();
        // The deadline passes: the operator starts moving the node's rooms.
        wait::until(
            "the first room to move",
            Duration::from_secs(30),
            || async {
                let by_node = self.rooms_by_node().await;
                let left = by_node.get(&name).map_or(0, BTreeSet::len);
                (left < rooms.len())
                    .then_some(())
                    .ok_or(format!("{left} rooms on {name}"))
            },
        )
        .await
        .unwrap();
        let leader = self.leader().await;
        let healed = self.now();
        assert!(self.replicas.kill(leader));
        eprintln!("chaos: {fault}: {name} drains {} room(s)", rooms.len());
        wait::until(
            "the drained node to be empty",
            Duration::from_secs(120),
            || async {
                let left = self
                    .rooms_by_node()
                    .await
                    .get(&name)
                    .map_or(0, BTreeSet::len);
                (left == 0)
                    .then_some(())
                    .ok_or(format!("{left} rooms left on {name}"))
            },
        )
        .await
        .unwrap();
        let undrain = json!({ "spec": { "drain": null } });
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&undrain))
            .await
            .unwrap();
        self.judge(fault, injected, healed, BTreeSet::new()).await;
    }

    pub(super) async fn admin_port_cut(&mut self) {
        let fault = "operator cut off from a node's admin port for 30 s";
        let (node, _) = self.busiest_node().await;
        let pod = Self::pod_of(&node);
        let address = self
            .env
            .runner()
            .unwrap()
            .address_of(&pod)
            .expect("the pod's address");
        let injected = self.now();
        let name = node.name_any();
        let nodes = self.env.api::<MediaNode>();
        let unreachable = || async {
            let n = nodes.get(&name).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(n.status.as_ref().is_some_and(MediaNodeStatus::unreachable))
        };
        let cut = Cut::apply(OPERATOR_GID, address, ADMIN_PORT).unwrap();
        eprintln!("chaos: {fault}: {name} ({address}:{ADMIN_PORT})");
        // The cut is real: the operator says the node is unreachable (its pod is still ready).
        let seen = wait::until("the node to be reported unreachable", CUT_OFF, || async {
            unreachable()
                .await?
                .then(|| self.now())
                .ok_or_else(|| "not yet".to_string())
        })
        .await
        .unwrap_or_else(|e| panic!("{fault}: the cut had no effect: {e}"));
        let until = self.began + injected + CUT_OFF;
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        drop(cut);
        let healed = self.now();
        let back = wait::until(
            "the node to be reachable again",
            Duration::from_secs(60),
            || async {
                (!unreachable().await?)
                    .then(|| self.now())
                    .ok_or_else(|| "still unreachable".to_string())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e}"));
        self.notes.push(format!(
            "{fault}: {name} reported unreachable {:.1} s after the cut, reachable again {:.1} s after it was lifted",
            seen.saturating_sub(injected).as_secs_f64(),
            back.saturating_sub(healed).as_secs_f64()
        ));
        self.judge(fault, injected, healed, BTreeSet::new()).await;
    }

    /// Hangs the busiest node for [`HUNG`], killing the leader at the same moment if asked.
    pub(super) async fn node_hung(&mut self, and_leader: bool) {
        let fault = if and_leader {
            "a node SIGSTOPped for 20 s and the leader SIGKILLed"
        } else {
            "a node SIGSTOPped for 20 s"
        };
        let (node, rooms) = self.busiest_node().await;
        let pod = Self::pod_of(&node);
        let leader = if and_leader {
            Some(self.leader().await)
        } else {
            None
        };
        let injected = self.now();
        self.env
            .runner()
            .unwrap()
            .signal(&pod, Signal::SIGSTOP)
            .unwrap();
        if let Some(l) = leader {
            assert!(self.replicas.kill(l));
        }
        eprintln!(
            "chaos: {fault}: {} with {} room(s)",
            node.name_any(),
            rooms.len()
        );
        tokio::time::sleep(HUNG).await;
        // Its pod may be gone by now (the fleet replaced the node), and the process with it.
        if let Err(e) = self.env.runner().unwrap().signal(&pod, Signal::SIGCONT) {
            eprintln!("chaos: {fault}: not resumed: {e}");
        }
        let healed = self.now();
        self.judge(fault, injected, healed, rooms).await;
    }

    pub(super) async fn zone_killed(&mut self) {
        let (node, _) = self.busiest_node().await;
        let zone = node.spec.zone.clone();
        let fault = format!("zone {zone}: both nodes SIGKILLed");
        let by_node = self.rooms_by_node().await;
        let in_zone: Vec<MediaNode> = self
            .env
            .nodes(FLEET)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.spec.zone == zone)
            .collect();
        let excused: BTreeSet<String> = in_zone
            .iter()
            .flat_map(|n| by_node.get(&n.name_any()).cloned().unwrap_or_default())
            .collect();
        let injected = self.now();
        for n in &in_zone {
            self.env.runner().unwrap().kill(&Self::pod_of(n)).unwrap();
        }
        self.judge(&fault, injected, injected, excused).await;
    }

    pub(super) async fn burst(&mut self) {
        let fault = format!("{BURST} rooms created at once");
        let names: Vec<String> = (0..BURST).map(|i| format!("burst-{i:04}")).collect();
        let rooms = names
            .iter()
            .map(|n| fixtures::room(n, FLEET, 2, &[]).unwrap())
            .collect();
        let injected = self.now();
        let start = Instant::now();
        self.env.create_rooms(rooms, 200).await.unwrap();
        let created = start.elapsed();
        let healed = self.now();
        self.env
            .wait_rooms_placed(&names, &[RoomPhase::Scheduled], Duration::from_secs(180))
            .await
            .unwrap();
        let placed = start.elapsed();
        self.notes.push(format!(
            "{fault}: created in {:.2} s (200 requests at a time), all placed {:.2} s after the first request",
            created.as_secs_f64(),
            placed.as_secs_f64()
        ));
        self.judge(&fault, injected, healed, BTreeSet::new()).await;
        let api = self.env.api::<Room>();
        futures::future::join_all(names.chunks(100).map(|chunk| {
            let api = api.clone();
            async move {
                for n in chunk {
                    let _ = api.delete(n, &DeleteParams::default()).await;
                }
            }
        }))
        .await;
        wait::until(
            "the burst's rooms to go",
            Duration::from_secs(180),
            || async {
                let left = self
                    .env
                    .rooms()
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .filter(|r| r.name_any().starts_with("burst-"))
                    .count();
                (left == 0).then_some(()).ok_or(format!("{left} left"))
            },
        )
        .await
        .unwrap();
    }

    pub(super) async fn node_killed_while_api_server_down(&mut self) {
        let fault = "a node SIGKILLed while the API server is stopped for 30 s";
        let (node, rooms) = self.busiest_node().await;
        let pod = Self::pod_of(&node);
        let injected = self.now();
        self.control.stop(Component::ApiServer).await.unwrap();
        self.env.runner().unwrap().kill(&pod).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        self.control.start().await.unwrap();
        let healed = self.now();
        self.judge(fault, injected, healed, rooms).await;
    }
}
