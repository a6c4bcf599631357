//! Cluster-wide scenarios: the operator installed as the README says, `kubectl apply -k
//! manifests`, its Deployment's pods run by the pod runner with the in-cluster configuration
//! kube-rs reads, serving tenant namespaces under the RBAC of `manifests/rbac/`.
//!
//! A separate test binary from `tests/e2e.rs` on purpose: a cluster-wide operator would act
//! on the objects of those scenarios too, and `cargo test` runs test binaries one after the
//! other. Scenarios here share [`Installed`], which runs them one at a time. Without a
//! cluster every test prints `SKIPPED (no cluster): <why>` and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use ruche_crds::{MediaNode, Room};
use ruche_e2e::fixtures::{self, MIN_NODES};
use ruche_e2e::install::{Installed, Leadership};
use ruche_e2e::wait;
use ruche_operator::controller::admin::{AdminTarget, HttpAdmin, NodeAdmin as _};

/// How long the Deployment gets to have 2 ready replicas, one of them leading.
const INSTALL_READY: Duration = Duration::from_secs(180);
/// How long another replica gets to lead after the leader's pod is deleted, and the
/// Deployment to be whole again.
const TAKEOVER: Duration = Duration::from_secs(120);
/// How long a crashed operator container gets to run and be ready again (the first restart
/// back-off is 10 s).
const RESTARTED: Duration = Duration::from_secs(90);
/// How long a fresh fleet gets to run 6 Ready nodes.
const FLEET_READY: Duration = Duration::from_secs(240);
/// How long a room gets to be placed.
const ROOM_PLACED: Duration = Duration::from_secs(60);
/// The tenant's fleet.
const FLEET: &str = "visio";
/// Host ports of the tenant's media nodes: clear of `tests/e2e.rs`'s 21000 + 100·n.
const HOST_PORT_BASE: u16 = 24_000;

/// Installs the operator, or returns from the test if there is no cluster.
macro_rules! install {
    ($test:expr) => {
        match Installed::install($test).await {
            Ok(Some(env)) => env,
            Ok(None) => return,
            Err(e) => panic!("{}: install failed: {e}", $test),
        }
    };
}

/// `kubectl apply -k manifests` installs a working operator: two replicas ready, one leading
/// (Lease and probes agree); it runs a tenant's fleet and places its rooms under the
/// cluster-wide RBAC; when the leader's pod is deleted another replica takes the Lease, the
/// ReplicaSet's replacement runs, and rooms are still placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_apply_k_manifests_installs_a_working_operator() {
    let mut env = install!("install");
    let started = Instant::now();
    if let Err(e) = install_scenario(&mut env).await {
        env.fail();
        panic!("{e}");
    }
    eprintln!("e2e [install]: passed in {:?}", started.elapsed());
}

fn step(n: u32, what: &str) {
    eprintln!("e2e [install]: step {n}: {what}");
}

async fn install_scenario(env: &mut Installed) -> ruche_e2e::Result<()> {
    step(
        2,
        "the Deployment has 2 ready replicas, exactly one of them leads",
    );
    env.wait_deployment_ready(INSTALL_READY).await?;
    let first = env.wait_leadership(INSTALL_READY, |_| Ok(())).await?;

    step(
        3,
        "a tenant's fleet becomes Ready and its room is placed, under the cluster-wide RBAC",
    );
    let tenant = env.create_tenant().await?;
    env.apply_fleet(&tenant, &fixtures::fleet(FLEET, HOST_PORT_BASE))
        .await?;
    env.wait_fleet_ready(&tenant, FLEET, MIN_NODES, FLEET_READY)
        .await?;
    env.place_room(
        &tenant,
        &fixtures::room("before", FLEET, 2, &[])?,
        ROOM_PLACED,
    )
    .await?;

    step(
        4,
        "the leader's pod is deleted: another replica takes the Lease, the replacement pod runs",
    );
    let deleted = Instant::now();
    env.delete_pod(&first.leader).await?;
    // Any live replica may take a released Lease: the standby, or the ReplicaSet's
    // replacement if it reads the Lease before the standby's next poll (every 2 s).
    let second = env
        .wait_leadership(TAKEOVER, |l: &Leadership| {
            if l.leader == first.leader || l.standby == first.leader {
                return Err(format!("the deleted pod {} still counts", first.leader));
            }
            Ok(())
        })
        .await?;
    let replacement = if second.leader == first.standby {
        &second.standby
    } else {
        &second.leader
    };
    if second.leader == first.standby {
        eprintln!(
            "e2e [install]: the standby {} took the Lease over from {}; {replacement}, the \
             ReplicaSet's replacement run by the runner at {:?}, is the new standby ({:?} after \
             the deletion)",
            second.leader,
            first.leader,
            env.runner.address_of(replacement),
            deleted.elapsed()
        );
    } else {
        eprintln!(
            "e2e [install]: NOTE: the ReplicaSet's replacement {replacement} (run by the runner \
             at {:?}) took the Lease released by {} before the standby {} polled it again; {} \
             stays standby ({:?} after the deletion)",
            env.runner.address_of(replacement),
            first.leader,
            first.standby,
            second.standby,
            deleted.elapsed()
        );
    }
    env.wait_deployment_ready(TAKEOVER).await?;
    env.place_room(
        &tenant,
        &fixtures::room("after", FLEET, 2, &[])?,
        ROOM_PLACED,
    )
    .await?;
    Ok(())
}

/// A crashed operator container is restarted in its pod, as a kubelet does with the
/// Deployment's `restartPolicy: Always`: the pod stays (no replacement), keeps its address,
/// counts one restart, and is a ready standby again; the leader never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_operator_container_restarts_in_its_pod() {
    let mut env = install!("install-restart");
    let started = Instant::now();
    if let Err(e) = restart_scenario(&env).await {
        env.fail();
        panic!("{e}");
    }
    eprintln!("e2e [install-restart]: passed in {:?}", started.elapsed());
}

async fn restart_scenario(env: &Installed) -> ruche_e2e::Result<()> {
    env.wait_deployment_ready(INSTALL_READY).await?;
    let first = env.wait_leadership(INSTALL_READY, |_| Ok(())).await?;
    let killed = env.runner.kill(&first.standby)?;
    let crashed = Instant::now();
    let backed_off = AtomicBool::new(false);
    let restarted = wait::until(
        &format!("pod {} to run again with one restart", first.standby),
        RESTARTED,
        || async {
            let pods = env.operator_pods().await.map_err(|e| e.to_string())?;
            let names: Vec<String> = pods.iter().map(ResourceExt::name_any).collect();
            let pod = pods
                .iter()
                .find(|p| p.name_any() == first.standby)
                .ok_or_else(|| format!("pod {} is gone (pods: {names:?})", first.standby))?;
            let status = pod.status.clone().unwrap_or_default();
            let container = status
                .container_statuses
                .as_ref()
                .and_then(|c| c.first())
                .ok_or("no container status")?;
            let running = container
                .state
                .as_ref()
                .is_some_and(|s| s.running.is_some());
            let waiting = container
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref());
            let exited = container
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code);
            if waiting == Some("CrashLoopBackOff")
                && !container.ready
                && exited == Some(137)
                && status.phase.as_deref() == Some("Running")
            {
                backed_off.store(true, Ordering::SeqCst);
            }
            if container.restart_count == 1 && running && container.ready {
                Ok((status.pod_ip, names))
            } else {
                Err(format!(
                    "restartCount {}, ready {}, state {:?}, lastState {:?}",
                    container.restart_count, container.ready, container.state, container.last_state
                ))
            }
        },
    )
    .await?;
    eprintln!(
        "e2e [install-restart]: pod {} (pid {} killed) was seen in CrashLoopBackOff, not \
         ready, then runs again with restartCount 1 at {:?} {:?} after the crash; pods {:?}",
        first.standby,
        killed.pid,
        restarted.0,
        crashed.elapsed(),
        restarted.1
    );
    if !backed_off.load(Ordering::SeqCst) {
        return Err(ruche_e2e::Error::Setup(format!(
            "pod {} was never seen Running, not ready, in CrashLoopBackOff after exit code 137",
            first.standby
        )));
    }
    if restarted.0 != Some(first.standby_ip.to_string()) || restarted.1.len() != 2 {
        return Err(ruche_e2e::Error::Setup(format!(
            "the restarted pod should keep {} and have no replacement: {restarted:?}",
            first.standby_ip
        )));
    }
    env.wait_deployment_ready(RESTARTED).await?;
    env.wait_leadership(RESTARTED, |l: &Leadership| {
        if l.leader == first.leader && l.standby == first.standby {
            Ok(())
        } else {
            Err(format!(
                "{} leads, {} waits; want {} and {}",
                l.leader, l.standby, first.leader, first.standby
            ))
        }
    })
    .await?;
    Ok(())
}

/// Two ministries on one cluster, each with a fleet named `visio` and nodes of the same names,
/// under one cluster-wide operator: one fleet is scaled, rooms come and go in both, and the
/// operator's leader is replaced. Throughout, no room, reservation or assignment crosses
/// between the namespaces, and slots freed by a deleted room are used again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ministries_with_fleets_of_the_same_name_never_share_anything() {
    let mut env = install!("two-ministries");
    let started = Instant::now();
    if let Err(e) = tenants_scenario(&mut env).await {
        env.fail();
        panic!("{e}");
    }
    eprintln!("e2e [two-ministries]: passed in {:?}", started.elapsed());
}

/// Slots per node and per room: two rooms fill a node.
const TENANT_NODE_SLOTS: u32 = 10;
const TENANT_ROOM_SLOTS: u32 = 5;
/// How soon a waiting room must be placed once a room of its fleet is deleted.
const FREED_REUSED: Duration = Duration::from_secs(10);

fn tenant_fleet(host_port_base: u16) -> serde_json::Value {
    fixtures::fleet_with(FLEET, host_port_base, &[("e2e-a", 1, 2)], TENANT_NODE_SLOTS)
}

async fn tenants_scenario(env: &mut Installed) -> ruche_e2e::Result<()> {
    env.wait_deployment_ready(INSTALL_READY).await?;
    let first = env.wait_leadership(INSTALL_READY, |_| Ok(())).await?;
    let a = env.create_tenant().await?;
    let b = env.create_tenant().await?;
    env.apply_fleet(&a, &tenant_fleet(24_100)).await?;
    env.apply_fleet(&b, &tenant_fleet(24_200)).await?;
    env.wait_fleet_ready(&a, FLEET, 1, FLEET_READY).await?;
    env.wait_fleet_ready(&b, FLEET, 1, FLEET_READY).await?;

    // Both nodes are called visio-e2e-a-0; each takes its own ministry's two rooms and is full.
    for (ns, prefix) in [(&a, "a"), (&b, "b")] {
        for i in 1..=2 {
            env.place_room(ns, &room(&format!("{prefix}{i}"))?, ROOM_PLACED)
                .await?;
        }
    }
    check_tenants(env, &[&a, &b]).await?;

    // kubectl scale on ministry A only: A gets a second node, B does not.
    let out = env
        .kubectl
        .run(&["-n", &a, "scale", "mediafleet", FLEET, "--replicas=2"])
        .await?;
    eprintln!("e2e [two-ministries]: kubectl scale: {}", out.trim());
    env.wait_fleet_ready(&a, FLEET, 2, FLEET_READY).await?;
    let a3 = env.place_room(&a, &room("a3")?, ROOM_PLACED).await?;
    let a3_node = a3.status.unwrap_or_default().node.unwrap_or_default();
    if a3_node != "visio-e2e-a-1" {
        return Err(setup(format!(
            "a3 should take A's new node, took {a3_node}"
        )));
    }
    // B's node is full: its third room waits, and never lands on A's new node.
    create(env, &b, "b3").await?;
    expect_waiting(env, &b, "b3").await?;
    check_tenants(env, &[&a, &b]).await?;

    // A room of B goes: its slots take B's waiting room at once.
    freed_then_reused(env, &b, "b1", "b3").await?;
    check_tenants(env, &[&a, &b]).await?;

    // The leader's pod is deleted; the operator that takes over rebuilds everything from the API.
    let placed_before = placements(env, &[&a, &b]).await?;
    env.delete_pod(&first.leader).await?;
    env.wait_leadership(TAKEOVER, |l: &Leadership| {
        if l.leader == first.leader || l.standby == first.leader {
            Err(format!("the deleted pod {} still counts", first.leader))
        } else {
            Ok(())
        }
    })
    .await?;
    env.wait_deployment_ready(TAKEOVER).await?;
    let placed_after = placements(env, &[&a, &b]).await?;
    if placed_after != placed_before {
        return Err(setup(format!(
            "rooms moved across the leader change: {placed_before:?} then {placed_after:?}"
        )));
    }
    // After the change too, freed slots are reused at once, in each namespace on its own.
    create(env, &b, "b4").await?;
    expect_waiting(env, &b, "b4").await?;
    freed_then_reused(env, &b, "b2", "b4").await?;
    Api::<Room>::namespaced(env.client.clone(), &a)
        .delete("a1", &DeleteParams::default())
        .await?;
    let a4 = env.place_room(&a, &room("a4")?, ROOM_PLACED).await?;
    eprintln!(
        "e2e [two-ministries]: after the leader change, a4 took the slots a1 left on {}",
        a4.status.unwrap_or_default().node.unwrap_or_default()
    );
    wait::until(
        "every node's list to match its own namespace's rooms",
        Duration::from_secs(30),
        || async {
            check_tenants(env, &[&a, &b])
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await?;
    Ok(())
}

fn setup(message: String) -> ruche_e2e::Error {
    ruche_e2e::Error::Setup(message)
}

fn room(name: &str) -> ruche_e2e::Result<Room> {
    fixtures::room(name, FLEET, TENANT_ROOM_SLOTS, &[])
}

async fn create(env: &Installed, ns: &str, name: &str) -> ruche_e2e::Result<()> {
    Api::<Room>::namespaced(env.client.clone(), ns)
        .create(&PostParams::default(), &room(name)?)
        .await?;
    Ok(())
}

/// Waits until the room says it waits for capacity, and checks it is on no node.
async fn expect_waiting(env: &Installed, ns: &str, name: &str) -> ruche_e2e::Result<()> {
    let api = Api::<Room>::namespaced(env.client.clone(), ns);
    let why = wait::until(
        &format!("{ns}/{name} to say why it waits"),
        Duration::from_secs(30),
        || async {
            let r = api.get(name).await.map_err(|e| e.to_string())?;
            let status = r.status.unwrap_or_default();
            let scheduled = status
                .conditions
                .iter()
                .find(|c| c.type_ == fixtures::SCHEDULED)
                .ok_or("no Scheduled condition yet")?;
            if status.node.is_some() {
                return Err(format!("placed on {:?}", status.node));
            }
            if scheduled.status == "False" && scheduled.reason != "FleetNotFound" {
                Ok(format!("{}: {}", scheduled.reason, scheduled.message))
            } else {
                Err(format!("{}: {}", scheduled.reason, scheduled.message))
            }
        },
    )
    .await?;
    eprintln!("e2e [two-ministries]: {ns}/{name} waits: {why}");
    Ok(())
}

/// Deletes `gone` and times how long `waiting` takes to be placed on the slots it freed.
async fn freed_then_reused(
    env: &Installed,
    ns: &str,
    gone: &str,
    waiting: &str,
) -> ruche_e2e::Result<()> {
    let api = Api::<Room>::namespaced(env.client.clone(), ns);
    let node_of_gone = api
        .get(gone)
        .await?
        .status
        .unwrap_or_default()
        .node
        .unwrap_or_default();
    let deleted = Instant::now();
    api.delete(gone, &DeleteParams::default()).await?;
    let placed = wait::until_every(
        &format!("{ns}/{waiting} to take the slots {gone} freed"),
        FREED_REUSED,
        Duration::from_millis(50),
        || async {
            let r = api.get(waiting).await.map_err(|e| e.to_string())?;
            match r.status.and_then(|s| s.node) {
                Some(node) => Ok(node),
                None => Err("not placed yet".to_string()),
            }
        },
    )
    .await?;
    eprintln!(
        "e2e [two-ministries]: {ns}/{gone} deleted; {ns}/{waiting} placed on {placed} {:?} later",
        deleted.elapsed()
    );
    if placed != node_of_gone {
        return Err(setup(format!(
            "{ns}/{waiting} should take the slots {gone} freed on {node_of_gone}, took {placed}"
        )));
    }
    Ok(())
}

/// Where every room of the namespaces is: namespace, room, node.
async fn placements(
    env: &Installed,
    namespaces: &[&String],
) -> ruche_e2e::Result<BTreeMap<(String, String), Option<String>>> {
    let mut out = BTreeMap::new();
    for ns in namespaces {
        for r in Api::<Room>::namespaced(env.client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            out.insert(((*ns).clone(), r.name_any()), r.status.and_then(|s| s.node));
        }
    }
    Ok(out)
}

/// In each namespace: every placed room names a node of its own namespace, and every node's
/// admin API holds exactly the rooms placed on it there, with their slots reserved.
async fn check_tenants(env: &Installed, namespaces: &[&String]) -> ruche_e2e::Result<()> {
    let admin = HttpAdmin::new(Duration::from_secs(3));
    let mut problems = Vec::new();
    for ns in namespaces {
        let nodes = Api::<MediaNode>::namespaced(env.client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items;
        let rooms = Api::<Room>::namespaced(env.client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items;
        let token = fixtures::admin_token(&env.client, ns, FLEET).await?;
        for node in &nodes {
            let name = node.name_any();
            let mut want: Vec<String> = rooms
                .iter()
                .filter(|r| r.status.as_ref().and_then(|s| s.node.as_deref()) == Some(&name))
                .map(ResourceExt::name_any)
                .collect();
            want.sort();
            let Some(url) = node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.admin.clone())
            else {
                problems.push(format!("{ns}/{name}: no admin address"));
                continue;
            };
            let target = AdminTarget {
                url,
                token: token.clone(),
            };
            let report = admin
                .report(&target)
                .await
                .map_err(|e| setup(e.to_string()))?;
            let reserved = report.status.reserved_slots;
            let expected = TENANT_ROOM_SLOTS * u32::try_from(want.len()).unwrap_or(0);
            if reserved != expected {
                problems.push(format!(
                    "{ns}/{name} reserves {reserved} slots; its rooms {want:?} need {expected}"
                ));
            }
        }
        for r in &rooms {
            if let Some(node) = r.status.as_ref().and_then(|s| s.node.as_deref())
                && !nodes.iter().any(|n| n.name_any() == node)
            {
                problems.push(format!(
                    "{ns}/{} names node {node}, not of {ns}",
                    r.name_any()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(setup(problems.join("; ")))
    }
}
