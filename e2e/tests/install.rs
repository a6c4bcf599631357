//! Cluster-wide scenarios: the operator installed as the README says, `kubectl apply -k
//! manifests`, its Deployment's pods run by the pod runner with the in-cluster configuration
//! kube-rs reads, serving tenant namespaces under the RBAC of `manifests/rbac/`.
//!
//! A separate test binary from `tests/e2e.rs` on purpose: a cluster-wide operator would act
//! on the objects of those scenarios too, and `cargo test` runs test binaries one after the
//! other. Scenarios here share [`Installed`], which runs them one at a time. Without a
//! cluster every test prints `SKIPPED (no cluster): <why>` and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use ruche_e2e::fixtures::{self, MIN_NODES};
use ruche_e2e::install::{Installed, Leadership};
use ruche_e2e::wait;

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
