//! Two ministries install Ruche with Helm on the real API server, side by side: one with
//! Helm 4, serving its own namespace, whose fleet uses NodePort exposure under Pod Security
//! `restricted`; one with Helm 3, serving two namespaces, whose fleet in the second uses
//! HostPort exposure (Pod Security `privileged` there) and carries a real call. Each operator
//! places its own rooms and cannot see the other's; `kubectl ruche` drives the first fleet;
//! Debian's Prometheus scrapes both operators and the media nodes and runs every dashboard
//! query; `helm upgrade` rolls the first operator without moving its room, and
//! `helm uninstall` removes it but keeps the CRDs, while the second goes on placing rooms.
//!
//! Without a cluster (`RUCHE_E2E_KUBECONFIG` unset or unreachable) the test prints
//! `SKIPPED (no cluster): <why>` and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::large_futures, clippy::too_many_lines)]

#[path = "../../media-node/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use ruche_crds::{MediaFleet, MediaNode, NodePhase, Room, RoomPhase};
use ruche_e2e::helm::{CRDS, Ministries};
use ruche_e2e::prometheus::{Job, Prometheus, Target};
use ruche_e2e::runner::{OPERATOR_SELECTOR, POD_SELECTOR};
use ruche_e2e::{fixtures, harness, wait};
use serde_json::{Value, json};
use support::{Client as Participant, Pacer};

const TEST: &str = "helm-two-ministries";
/// Both releases are named `ruche`: their cluster-scoped objects must not clash.
const RELEASE: &str = "ruche";
const FLEET: &str = "visio";
/// The Deployment, Lease and ServiceAccount a release named `ruche` makes.
const FULLNAME: &str = "ruche";
/// Host ports of the HostPort fleet: clear of the other test binaries' (21000–24000).
const HOST_PORT_BASE: u16 = 25_000;
const READY: Duration = Duration::from_secs(180);
/// The media nodes' admin port (their `/metrics`).
const ADMIN_PORT: u16 = 7881;
/// The operator's metrics port (the chart's `metrics.port`).
const OPERATOR_PORT: u16 = 8080;

/// The first ministry's values: its own namespace, the CRDs (kept on uninstall), a
/// NodePort fleet of two zones and a room.
fn values_a(namespace: &str) -> Value {
    json!({
        "watchNamespaces": [namespace],
        "crds": { "enabled": true, "keep": true },
        "logLevel": "info,ruche_operator=debug",
        "fleet": {
            "enabled": true,
            "name": FLEET,
            "spec": {
                "template": { "image": fixtures::IMAGE, "imagePullPolicy": "Never" },
                "capacity": { "slots": 100 },
                "zones": [
                    { "name": "fr-par-1", "minNodes": 1, "maxNodes": 2 },
                    { "name": "fr-par-2", "minNodes": 1, "maxNodes": 2 },
                ],
                "exposure": { "mode": "NodePort" },
            },
        },
        "rooms": [
            { "name": "conseil-des-ministres", "spec": { "slots": 10, "emptyTimeout": "1h" } },
        ],
    })
}

/// The second ministry's values: two namespaces served, no CRDs (the first release has
/// them), an autoscaled HostPort fleet with a room in the second namespace.
fn values_b(own: &str, second: &str) -> Value {
    json!({
        "watchNamespaces": [own, second],
        "crds": { "enabled": false },
        "fleet": {
            "enabled": true,
            "name": FLEET,
            "namespace": second,
            "spec": {
                "template": { "image": fixtures::IMAGE, "imagePullPolicy": "Never" },
                "capacity": { "slots": 100 },
                "zones": [ { "name": "fr-par-1", "minNodes": 1, "maxNodes": 3 } ],
                "exposure": { "mode": "HostPort", "hostPortBase": HOST_PORT_BASE },
                // More free slots than one node has: the autoscaler adds a second.
                "autoscaling": { "bufferSlots": 150 },
            },
        },
        "rooms": [
            { "name": "point-presse", "spec": { "slots": 4, "emptyTimeout": "1h" } },
        ],
    })
}

/// Waits until the release's Deployment has `want` replicas, all updated, ready and
/// available, and as many operator pods; returns their names.
async fn wait_operator(client: &Client, namespace: &str, want: i32) -> Vec<String> {
    let started = Instant::now();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let names = wait::until(
        &format!("Deployment {namespace}/{FULLNAME} to run {want} ready replicas"),
        READY,
        || async {
            let d = deployments.get(FULLNAME).await.map_err(|e| e.to_string())?;
            let s = d.status.clone().unwrap_or_default();
            let live: Vec<String> = pods
                .list(&ListParams::default().labels(OPERATOR_SELECTOR))
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| p.name_any())
                .collect();
            let done = s.observed_generation >= d.metadata.generation
                && s.replicas == Some(want)
                && s.updated_replicas == Some(want)
                && s.ready_replicas == Some(want)
                && s.available_replicas == Some(want)
                && live.len() == usize::try_from(want).unwrap_or(0);
            if done {
                Ok(live)
            } else {
                Err(format!("status {s:?}, {} live pods", live.len()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e [{TEST}]: Deployment {namespace}/{FULLNAME}: {want} replicas ready ({:?}): {names:?}",
        started.elapsed()
    );
    names
}

/// The holder of the release's Lease, once one of `pods` holds it.
async fn wait_leader(client: &Client, namespace: &str, pods: &[String]) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    wait::until(&format!("a leader in {namespace}"), READY, || async {
        let lease = leases
            .get_opt(FULLNAME)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no Lease yet")?;
        let holder = lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default();
        if pods.contains(&holder) {
            Ok(holder)
        } else {
            Err(format!("holder {holder:?} is none of {pods:?}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the fleet has `want` Ready nodes (any exposure mode); returns them.
async fn wait_nodes(client: &Client, namespace: &str, want: usize) -> Vec<MediaNode> {
    let started = Instant::now();
    let nodes: Api<MediaNode> = Api::namespaced(client.clone(), namespace);
    let fleets: Api<MediaFleet> = Api::namespaced(client.clone(), namespace);
    let ready = wait::until(
        &format!("fleet {namespace}/{FLEET} to run {want} Ready nodes"),
        READY,
        || async {
            let fleet = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items;
            let ready: Vec<MediaNode> = list
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .is_some_and(|s| s.phase == NodePhase::Ready)
                })
                .cloned()
                .collect();
            let status = fleet.status.unwrap_or_default();
            if ready.len() == want && status.ready_replicas as usize == want {
                Ok(ready)
            } else {
                Err(format!(
                    "{} Ready of {} nodes, fleet readyReplicas {}",
                    ready.len(),
                    list.len(),
                    status.ready_replicas
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e [{TEST}]: fleet {namespace}/{FLEET}: {want} Ready nodes ({:?})",
        started.elapsed()
    );
    ready
}

/// Waits until the room is Scheduled; returns it.
async fn wait_room(client: &Client, namespace: &str, room: &str) -> Room {
    let placed = harness::wait_rooms_placed(
        client,
        namespace,
        &[room.to_string()],
        &[RoomPhase::Scheduled, RoomPhase::Active],
        READY,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    placed.into_iter().next().unwrap()
}

/// The instances (operator pods) that reported events about `room`.
async fn reporters(client: &Client, namespace: &str, room: &str) -> Vec<String> {
    let mut out: Vec<String> = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(room))
        .filter_map(|e| e.reporting_instance)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the release's ServiceAccount may `verb` rooms in `namespace`.
async fn may(client: &Client, sa_namespace: &str, verb: &str, namespace: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{sa_namespace}:{FULLNAME}")),
            resource_attributes: Some(ResourceAttributes {
                group: Some("ruche.dev".into()),
                resource: Some("rooms".into()),
                verb: Some(verb.into()),
                namespace: Some(namespace.into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap();
    answer.status.is_some_and(|s| s.allowed)
}

/// The plugin binary, built with the suite.
fn plugin() -> PathBuf {
    ruche_e2e::process::binary("RUCHE_KUBECTL_PLUGIN_BIN", "kubectl-ruche").unwrap()
}

/// Runs `kubectl-ruche --kubeconfig K args`; returns (success, stdout, stderr).
async fn ruche(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(plugin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!(
        "e2e [{TEST}]: $ kubectl ruche {} -> {}\n{}{}",
        args.join(" "),
        out.status,
        stdout.trim_end(),
        if stderr.trim().is_empty() {
            String::new()
        } else {
            format!("\n(stderr) {}", stderr.trim())
        }
    );
    (out.status.success(), stdout, stderr)
}

/// Runs a plugin command that must succeed; returns its output.
async fn ruche_ok(kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = ruche(kubeconfig, args).await;
    assert!(ok, "kubectl ruche {} failed: {err}", args.join(" "));
    out
}

/// Runs a plugin command that must fail with `want` in its error.
async fn ruche_fails(kubeconfig: &std::path::Path, args: &[&str], want: &str) {
    let (ok, _, err) = ruche(kubeconfig, args).await;
    assert!(!ok, "kubectl ruche {} succeeded", args.join(" "));
    assert!(
        err.contains(want),
        "kubectl ruche {}: error {err:?} does not say {want:?}",
        args.join(" ")
    );
}

/// Two participants in `room` at `endpoint` for `duration`, publishing and receiving.
async fn call(endpoint: &str, room: &str, tokens: [String; 2], duration: Duration) -> [bool; 2] {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (endpoint, room, stop) = (endpoint.to_string(), room.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = Participant::join(&endpoint, &room, &token)
                .await
                .unwrap_or_else(|r| panic!("could not join {room} at {endpoint}: {r}"));
            let (video, audio) = client.publish_av().await;
            let mut pacer = Pacer::new(&client, Duration::from_secs(1));
            let tag = u8::try_from(i + 1).unwrap();
            while !stop.load(Ordering::Relaxed) {
                pacer.step(&client, &video, &audio, tag).await;
            }
            let got = client.received.lock().unwrap().first_packet.is_some();
            client.close().await;
            got
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut got = [false; 2];
    for (i, t) in tasks.into_iter().enumerate() {
        got[i] = t.await.unwrap();
    }
    got
}

/// Every dashboard panel's queries, with Grafana's variables given values: (dashboard,
/// panel, query).
fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = ruche_e2e::workspace().join("charts/ruche/files/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let title = board["title"].as_str().unwrap_or_default().to_string();
        for panel in board["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_default()
                    .replace("$__rate_interval", "1m")
                    .replace("$fleet", ".*");
                out.push((
                    title.clone(),
                    panel["title"].as_str().unwrap_or_default().to_string(),
                    expr,
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ministries_install_operate_upgrade_and_uninstall_with_helm() {
    let mut m = match Ministries::start(TEST).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => panic!("{TEST}: set-up failed: {e}"),
    };
    let client = m.client.clone();
    let kubeconfig = m.kubeconfig.clone();
    let a = m.namespace("a", "restricted").await.unwrap();
    let b = m.namespace("b", "restricted").await.unwrap();
    let b2 = m.namespace("b2", "privileged").await.unwrap();

    // Pod Security is enforced: a pod with a host port is refused where `restricted` is.
    let mut host_port_pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "host-port-probe" },
        "spec": { "containers": [{
            "name": "c", "image": fixtures::IMAGE,
            "ports": [{ "containerPort": 7880, "hostPort": 7880 }],
        }]},
    }))
    .unwrap();
    host_port_pod.metadata.namespace = Some(a.clone());
    let refused = Api::<Pod>::namespaced(client.clone(), &a)
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &host_port_pod,
        )
        .await
        .expect_err("a host-port pod must be refused under restricted");
    eprintln!("e2e [{TEST}]: a host-port pod in {a}: {refused}");
    assert!(
        refused.to_string().contains("restricted") && refused.to_string().contains("hostPort"),
        "{refused}"
    );

    // Ministry A, Helm 4, adopting the CRDs; ministry B, Helm 3, without them.
    m.adopt_crds(RELEASE, &a).await.unwrap();
    let helm4 = m.helm.clone();
    let helm3 = m.helm3.clone();
    let install_output_a = m.install(&helm4, RELEASE, &a, &values_a(&a)).await.unwrap();
    assert!(
        install_output_a.contains(&format!("It serves the namespaces {a} only")),
        "{install_output_a}"
    );
    let install_output_b = m
        .install(&helm3, RELEASE, &b, &values_b(&b, &b2))
        .await
        .unwrap();
    assert!(
        install_output_b.contains(&format!("It serves the namespaces {b}, {b2} only")),
        "{install_output_b}"
    );

    let pods_a = wait_operator(&client, &a, 2).await;
    let pods_b = wait_operator(&client, &b, 2).await;
    let leader_a = wait_leader(&client, &a, &pods_a).await;
    let leader_b = wait_leader(&client, &b, &pods_b).await;
    eprintln!("e2e [{TEST}]: leaders: {a}: {leader_a}, {b}: {leader_b}");

    // Each operator runs its fleet and places its rooms.
    let fleet_nodes_a = wait_nodes(&client, &a, 2).await;
    let fleet_nodes_b = wait_nodes(&client, &b2, 2).await;
    let room_a = wait_room(&client, &a, "conseil-des-ministres").await;
    let room_b = wait_room(&client, &b2, "point-presse").await;
    let node_a = room_a.status.clone().unwrap().node.unwrap();
    assert!(fleet_nodes_a.iter().any(|n| n.name_any() == node_a));
    assert!(
        fleet_nodes_b
            .iter()
            .any(|n| Some(n.name_any()) == room_b.status.clone().unwrap().node)
    );
    // NodePort exposure under `restricted`: the media pods run, with no host port.
    let media_pods_a = Api::<Pod>::namespaced(client.clone(), &a)
        .list(&ListParams::default().labels(POD_SELECTOR))
        .await
        .unwrap()
        .items;
    assert_eq!(media_pods_a.len(), 2);
    for p in &media_pods_a {
        let spec = p.spec.clone().unwrap();
        assert!(
            spec.containers
                .iter()
                .flat_map(|c| c.ports.clone().unwrap_or_default())
                .all(|port| port.host_port.is_none()),
            "{}",
            p.name_any()
        );
    }

    // A HostPort fleet where Pod Security is `restricted`: the API server refuses its pod, and
    // the node says so.
    let misplaced = json!({
        "apiVersion": "ruche.dev/v1alpha1",
        "kind": "MediaFleet",
        "metadata": { "name": "hotline" },
        "spec": {
            "template": { "image": fixtures::IMAGE, "imagePullPolicy": "Never" },
            "capacity": { "slots": 100 },
            "zones": [ { "name": "fr-par-1", "minNodes": 1, "maxNodes": 1 } ],
            "exposure": { "mode": "HostPort", "hostPortBase": HOST_PORT_BASE + 100 },
        },
    });
    Api::<MediaFleet>::namespaced(client.clone(), &b)
        .patch(
            "hotline",
            &PatchParams::apply("ruche-e2e"),
            &Patch::Apply(&misplaced),
        )
        .await
        .unwrap();
    let refusal = wait::until(
        "the hotline node to say its pod is refused",
        READY,
        || async {
            let nodes = Api::<MediaNode>::namespaced(client.clone(), &b)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            nodes
                .items
                .iter()
                .filter(|n| n.spec.fleet == "hotline")
                .flat_map(|n| n.status.clone().unwrap_or_default().conditions)
                .find(|c| c.type_ == "Ready" && c.reason == "PodRefused")
                .map(|c| c.message)
                .ok_or_else(|| format!("{} nodes, none refused yet", nodes.items.len()))
        },
    )
    .await
    .unwrap();
    eprintln!("e2e [{TEST}]: hotline node in {b}: PodRefused: {refusal}");
    assert!(
        refusal.contains("PodSecurity") && refusal.contains("hostPort"),
        "{refusal}"
    );

    // Each room's events come from its own ministry's operator.
    let (by_a, by_b) = (
        reporters(&client, &a, "conseil-des-ministres").await,
        reporters(&client, &b2, "point-presse").await,
    );
    eprintln!("e2e [{TEST}]: room events reported by {by_a:?} ({a}) and {by_b:?} ({b2})");
    assert!(
        !by_a.is_empty() && by_a.iter().all(|r| pods_a.contains(r)),
        "{by_a:?}"
    );
    assert!(
        !by_b.is_empty() && by_b.iter().all(|r| pods_b.contains(r)),
        "{by_b:?}"
    );
    // And neither may see the other's namespaces.
    for (sa, ns, want) in [
        (&a, &a, true),
        (&a, &b2, false),
        (&a, &b, false),
        (&b, &b, true),
        (&b, &b2, true),
        (&b, &a, false),
    ] {
        let allowed = may(&client, sa, "list", ns).await;
        eprintln!("e2e [{TEST}]: {sa}/{FULLNAME} may list rooms in {ns}: {allowed}");
        assert_eq!(allowed, want, "{sa}/{FULLNAME} listing rooms in {ns}");
    }

    // kubectl ruche against ministry A's live fleet.
    let status = ruche_ok(&kubeconfig, &["-n", &a, "status", FLEET]).await;
    assert!(
        status.contains("fr-par-1") && status.contains("fr-par-2"),
        "{status}"
    );
    let top = ruche_ok(&kubeconfig, &["-n", &a, "top", "nodes"]).await;
    assert!(
        fleet_nodes_a.iter().all(|n| top.contains(&n.name_any())),
        "{top}"
    );
    let top = ruche_ok(&kubeconfig, &["-n", &a, "top", "rooms"]).await;
    assert!(top.contains("conseil-des-ministres"), "{top}");
    let explain = ruche_ok(
        &kubeconfig,
        &["-n", &a, "explain", "room", "conseil-des-ministres"],
    )
    .await;
    assert!(explain.contains(&node_a), "{explain}");
    let json_status = ruche_ok(&kubeconfig, &["-n", &a, "-o", "json", "status", FLEET]).await;
    serde_json::from_str::<Value>(&json_status).expect("status -o json is JSON");
    let other = fleet_nodes_a
        .iter()
        .find(|n| n.name_any() != node_a)
        .unwrap()
        .name_any();
    ruche_ok(
        &kubeconfig,
        &[
            "-n",
            &a,
            "drain",
            &other,
            "--deadline",
            "30m",
            "--mode",
            "Migrate",
        ],
    )
    .await;
    let drained = Api::<MediaNode>::namespaced(client.clone(), &a)
        .get(&other)
        .await
        .unwrap();
    let drain = drained.spec.drain.clone().expect("drain set");
    assert_eq!(format!("{:?}", drain.mode), "Migrate");
    assert!(drain.deadline.is_some());
    ruche_ok(&kubeconfig, &["-n", &a, "undrain", &other]).await;
    let undrained = Api::<MediaNode>::namespaced(client.clone(), &a)
        .get(&other)
        .await
        .unwrap();
    assert!(undrained.spec.drain.is_none());
    let zone = drained.spec.zone.clone();
    ruche_ok(&kubeconfig, &["-n", &a, "evacuate", FLEET, &zone]).await;
    let fleet = Api::<MediaFleet>::namespaced(client.clone(), &a)
        .get(FLEET)
        .await
        .unwrap();
    assert!(
        fleet
            .spec
            .zones
            .iter()
            .any(|z| z.name == zone && z.evacuate)
    );
    ruche_ok(&kubeconfig, &["-n", &a, "evacuate", FLEET, &zone, "--undo"]).await;
    let fleet = Api::<MediaFleet>::namespaced(client.clone(), &a)
        .get(FLEET)
        .await
        .unwrap();
    assert!(fleet.spec.zones.iter().all(|z| !z.evacuate));
    ruche_fails(
        &kubeconfig,
        &["-n", &a, "explain", "room", "absent"],
        "absent",
    )
    .await;
    ruche_fails(
        &kubeconfig,
        &["-n", &a, "drain", &other, "--deadline", "soon"],
        "soon",
    )
    .await;
    let nowhere = m.dir.join("nowhere.kubeconfig");
    std::fs::write(
        &nowhere,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n\
         contexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\ncurrent-context: c\n",
    )
    .unwrap();
    ruche_fails(&nowhere, &["-n", &a, "status"], "127.0.0.1:1").await;
    // And through kubectl's plugin discovery (`kubectl ruche` finds kubectl-ruche on PATH).
    let path = format!(
        "{}:{}",
        plugin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let via_kubectl = tokio::process::Command::new(m.kubectl.program())
        .args([
            // kubectl wants its plugin's name first; the flags are the plugin's.
            "ruche",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "-n",
            &a,
            "top",
            "rooms",
        ])
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .unwrap();
    assert!(via_kubectl.status.success(), "{via_kubectl:?}");
    assert!(String::from_utf8_lossy(&via_kubectl.stdout).contains("conseil-des-ministres"));

    // A real call in ministry B's room, with tokens minted by the plugin.
    let endpoint = room_b.status.clone().unwrap().endpoint.unwrap();
    let mut tokens = Vec::new();
    for who in ["porte-parole", "journaliste"] {
        let token = ruche_ok(&kubeconfig, &["-n", &b2, "token", "point-presse", who]).await;
        tokens.push(token.trim().to_string());
    }
    let tokens: [String; 2] = tokens.try_into().unwrap();
    // A room larger than a node: refused, so the placement panels have a refusal to show.
    let too_big = fixtures::room("assemblee-pleniere", FLEET, 500, &[]).unwrap();
    Api::<Room>::namespaced(client.clone(), &b2)
        .create(&PostParams::default(), &too_big)
        .await
        .unwrap();

    // Prometheus scrapes both ministries' operators and ministry B's media nodes.
    let mut operators = Vec::new();
    for ns in [&a, &b] {
        for p in Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await
            .unwrap()
            .items
        {
            let ip = m.runner.address_in(ns, &p.name_any()).unwrap();
            operators.push(Target::new(ip, OPERATOR_PORT, ns, &p.name_any()));
        }
    }
    let media: Vec<Target> = Api::<Pod>::namespaced(client.clone(), &b2)
        .list(&ListParams::default().labels(POD_SELECTOR))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            Target::new(
                m.runner.address_in(&b2, &p.name_any()).unwrap(),
                ADMIN_PORT,
                &b2,
                &p.name_any(),
            )
        })
        .collect();
    let secret = Api::<Secret>::namespaced(client.clone(), &b2)
        .get(&format!("{FLEET}-admin-token"))
        .await
        .unwrap();
    let token = secret.data.unwrap().get("admin-token").unwrap().0.clone();
    let token_file = m.dir.join("admin-token");
    std::fs::write(&token_file, token).unwrap();
    let prometheus = Prometheus::start(
        &m.dir.join("prometheus"),
        &[
            Job {
                name: "ruche-operator".into(),
                targets: operators.clone(),
                token_file: None,
            },
            Job {
                name: "ruche-media-node".into(),
                targets: media.clone(),
                token_file: Some(token_file),
            },
        ],
    )
    .await
    .unwrap();
    let want_targets = operators.len() + media.len();
    let got = call(&endpoint, "point-presse", tokens, Duration::from_secs(25)).await;
    assert_eq!(got, [true, true], "both participants received media");
    let up = wait::until("every target to be up", Duration::from_secs(30), || async {
        let up = prometheus.targets_up().await.map_err(|e| e.to_string())?;
        if up.len() == want_targets && up.iter().all(|(_, v)| (*v - 1.0).abs() < f64::EPSILON) {
            Ok(up)
        } else {
            Err(format!("{up:?} (want {want_targets} targets up)"))
        }
    })
    .await
    .unwrap();
    eprintln!(
        "e2e [{TEST}]: Prometheus {} scrapes {up:?}",
        prometheus.address
    );
    let mut empty = Vec::new();
    let queries = dashboard_queries();
    for (board, panel, expr) in &queries {
        let result = prometheus.query(expr).await.unwrap();
        eprintln!("    {board} / {panel}: {} series  <- {expr}", result.len());
        if result.is_empty() {
            empty.push(format!("{board} / {panel}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without data:\n{}",
        empty.join("\n")
    );
    eprintln!(
        "e2e [{TEST}]: all {} dashboard queries return data from the live Prometheus",
        queries.len()
    );
    // The alerts' expressions on the same live data (their `for` aside): the HostPort fleet
    // refused in `restricted` has a zone without a Ready node, the room larger than any node
    // waits, and nothing else is wrong.
    let alerts: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(ruche_e2e::workspace().join("charts/ruche/files/alerts.yaml"))
            .unwrap(),
    )
    .unwrap();
    let rules: Vec<Value> = alerts["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    // The drain, evacuation and their undoing above take a reconcile and a scrape to leave
    // the metrics: the alerts are read until they settle on what this state must fire.
    let firing = wait::until(
        "the alerts to settle on this state",
        Duration::from_secs(60),
        || async {
            let mut firing = std::collections::BTreeMap::new();
            for rule in &rules {
                let name = rule["alert"].as_str().unwrap_or_default().to_string();
                let series = prometheus
                    .query(rule["expr"].as_str().unwrap_or_default())
                    .await
                    .map_err(|e| e.to_string())?;
                let labels: Vec<String> = series
                    .iter()
                    .map(|s| {
                        format!(
                            "{}/{}",
                            s["metric"]["fleet"].as_str().unwrap_or_default(),
                            s["metric"]["zone"].as_str().unwrap_or_default()
                        )
                    })
                    .collect();
                firing.insert(name, labels);
            }
            let quiet = [
                "RucheNoLeadingOperator",
                "RucheZoneBufferExhausted",
                "RucheRolloutHalted",
                "RucheDrainPastDeadline",
                "RucheMediaLossHigh",
            ];
            let settled = firing.len() == 8
                && firing.get("RucheZoneWithoutReadyNode")
                    == Some(&vec![format!("{b}/hotline/fr-par-1")])
                && firing.get("RucheRoomsUnschedulable") == Some(&vec![format!("{b2}/{FLEET}/")])
                && quiet
                    .iter()
                    .all(|q| firing.get(*q).is_some_and(Vec::is_empty));
            if settled {
                Ok(firing)
            } else {
                Err(format!("{firing:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for (name, labels) in &firing {
        eprintln!("    alert {name}: {labels:?}");
    }
    drop(prometheus);

    // helm upgrade (Helm 4): three replicas and another log level, so every pod is
    // replaced (a rolling update under the PodDisruptionBudget); the room stays where it is.
    let mut upgraded = values_a(&a);
    upgraded["replicaCount"] = json!(3);
    upgraded["logLevel"] = json!("debug");
    m.upgrade(&helm4, RELEASE, &a, &upgraded).await.unwrap();
    let rolled = wait::until(
        "the upgrade to replace every operator pod",
        READY,
        || async {
            let now = Api::<Pod>::namespaced(client.clone(), &a)
                .list(&ListParams::default().labels(OPERATOR_SELECTOR))
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .map(|p| p.name_any())
                .collect::<Vec<_>>();
            if now.iter().any(|p| pods_a.contains(p)) {
                Err(format!("old pods still there: {now:?}"))
            } else {
                Ok(now)
            }
        },
    )
    .await
    .unwrap();
    let pods_after = wait_operator(&client, &a, 3).await;
    assert!(rolled.iter().all(|p| !pods_a.contains(p)));
    let leader_after = wait_leader(&client, &a, &pods_after).await;
    eprintln!("e2e [{TEST}]: after the upgrade, {leader_after} leads");
    let room_after = Api::<Room>::namespaced(client.clone(), &a)
        .get("conseil-des-ministres")
        .await
        .unwrap();
    assert_eq!(
        room_after.status.unwrap().node.as_deref(),
        Some(node_a.as_str())
    );

    // helm uninstall: ministry A's operator goes, the CRDs stay (crds.keep), ministry B
    // goes on placing rooms.
    m.uninstall(&helm4, RELEASE, &a).await.unwrap();
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &a)
            .get_opt(FULLNAME)
            .await
            .unwrap()
            .is_none()
    );
    // The release's fleet and room went with it, their finalizers done: nothing is stuck.
    wait::until("ministry A's fleet and nodes to be gone", READY, || async {
        let fleets = Api::<MediaFleet>::namespaced(client.clone(), &a)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        let nodes = Api::<MediaNode>::namespaced(client.clone(), &a)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        if fleets + nodes == 0 {
            Ok(())
        } else {
            Err(format!("{fleets} fleets and {nodes} nodes left"))
        }
    })
    .await
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in CRDS {
        assert!(crds.get_opt(crd).await.unwrap().is_some(), "{crd} kept");
    }
    let later = fixtures::room("conference-de-presse", FLEET, 4, &[]).unwrap();
    Api::<Room>::namespaced(client.clone(), &b2)
        .create(&PostParams::default(), &later)
        .await
        .unwrap();
    wait_room(&client, &b2, "conference-de-presse").await;
    m.uninstall(&helm3, RELEASE, &b).await.unwrap();
    eprintln!("e2e [{TEST}]: passed");
}
