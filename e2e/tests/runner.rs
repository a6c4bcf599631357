//! The pod runner turns the pod the operator builds into a running media node on a loopback
//! address, or into the admin API stand-in of scale runs, which must answer the operator as a
//! media node does. No cluster needed: this runs with every `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use ruche_crds::admin::{Assignment, AssignmentList, ListVersion};
use ruche_crds::{MediaFleet, MediaNode, MediaNodeSpec, NodeCapacity};
use ruche_e2e::process::{self, Supervised, exit_code, tail};
use ruche_e2e::runner::{self, Objects};
use ruche_e2e::{fixtures, http, wait};
use ruche_operator::build::pod::{ExternalPort, pod};
use ruche_operator::controller::admin::{
    AdminError, AdminTarget, HttpAdmin, NodeAdmin as _, NodeReport,
};

const HOST_PORT: u16 = 21_901;
const ADMIN_TOKEN: &str = "e2e-admin-token-for-the-runner-test";
const JOIN_KEY: &str = "e2e-join-key-e2e-join-key-e2e-join-key-e2e-join-key-0123456789ab";

fn meta(name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("e2e".into()),
        uid: Some(uid.into()),
        ..Default::default()
    }
}

/// The pod the operator builds for a node of the e2e fleet, with host port `host_port`.
fn operator_pod(host_port: u16) -> Pod {
    let mut fleet: MediaFleet =
        serde_json::from_value(fixtures::fleet("f", host_port - 1)).unwrap();
    fleet.metadata = meta("f", "fleet-uid");
    let mut node = MediaNode::new(
        "f-e2e-a-abcde",
        MediaNodeSpec {
            fleet: "f".into(),
            zone: "e2e-a".into(),
            revision: "r1".into(),
            capacity: NodeCapacity { slots: 100 },
            drain: None,
        },
    );
    node.metadata = meta("f-e2e-a-abcde", "node-uid");
    let mut pod = pod(&fleet, &node, ExternalPort::Host(host_port)).unwrap();
    pod.metadata.uid = Some(format!("pod-uid-{host_port}-0123456789"));
    pod
}

/// The fleet's Secrets, as the runner would fetch them.
fn secrets() -> Objects {
    let mut objects = Objects::default();
    objects.secrets.insert(
        "f-join-key".into(),
        BTreeMap::from([("token-key".to_string(), JOIN_KEY.as_bytes().to_vec())]),
    );
    objects.secrets.insert(
        "f-admin-token".into(),
        BTreeMap::from([("admin-token".to_string(), ADMIN_TOKEN.as_bytes().to_vec())]),
    );
    objects
}

fn test_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ruche-e2e-{name}-{}", std::process::id()))
}

/// Waits until `GET /livez` on `admin` answers 200; kills the process and panics otherwise.
async fn wait_live(admin: SocketAddr, process: &Supervised, log: &Path) {
    let up = wait::until(
        &format!("/livez on {admin}"),
        Duration::from_secs(20),
        || async {
            match http::get(admin, "/livez", Duration::from_secs(2)).await {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status)),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    if let Err(e) = up {
        process.kill();
        panic!("{e}\n{}", tail(log, 40));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_pod_runs_as_a_media_node_on_loopback() {
    let binary = match process::binary("RUCHE_MEDIA_NODE_BIN", "ruche-media-node") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped (no media node binary yet): {e}");
            return;
        }
    };
    let pod = operator_pod(HOST_PORT);
    let objects = secrets();
    let dir = test_dir("runner-test");
    let prepared = runner::prepare(&pod, &objects, &dir, &binary).unwrap();
    let ip = prepared.ip;
    let env: BTreeMap<String, String> = prepared.env.iter().cloned().collect();
    let host = format!("{ip}:{HOST_PORT}");
    assert_eq!(env.get("RUCHE_HOST_IP"), Some(&ip.to_string()));
    assert_eq!(env.get("RUCHE_MEDIA_BIND"), Some(&host), "{env:#?}");
    assert_eq!(env.get("RUCHE_ADVERTISE"), Some(&host), "{env:#?}");
    assert_eq!(
        env.get("RUCHE_ADMIN_BIND"),
        Some(&format!("{ip}:{}", fixtures::ADMIN_PORT))
    );
    let key_file = env.get("RUCHE_TOKEN_KEY_FILE").unwrap();
    assert!(
        key_file.starts_with(&dir.display().to_string()),
        "{key_file}"
    );
    assert_eq!(std::fs::read_to_string(key_file).unwrap(), JOIN_KEY);
    let http_bind: SocketAddr = env.get("RUCHE_HTTP_BIND").unwrap().parse().unwrap();
    assert_eq!(http_bind.ip(), ip);
    let admin = SocketAddr::from((ip, fixtures::ADMIN_PORT));
    assert_eq!(
        prepared.readiness.as_ref().map(|(addr, _)| *addr),
        Some(admin),
        "the readiness probe goes to the admin API"
    );

    let log = prepared.log.clone();
    eprintln!("command: {}\nlog: {}", prepared.printed, log.display());
    let node_process = Supervised::spawn(prepared.command, &log).unwrap();
    wait_live(admin, &node_process, &log).await;
    tokio::net::TcpStream::connect(http_bind)
        .await
        .unwrap_or_else(|e| panic!("signaling on {http_bind}: {e}\n{}", tail(&log, 40)));
    let status = node_process
        .terminate(Duration::from_secs(5))
        .await
        .expect("the node exits on SIGTERM");
    assert_eq!(
        exit_code(status),
        0,
        "an idle node drains at once:\n{}",
        tail(&log, 40)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A node (real or stand-in) started by the runner from the operator's pod.
struct Started {
    label: &'static str,
    process: Supervised,
    log: PathBuf,
    admin: SocketAddr,
    advertise: String,
}

async fn start_from_pod(label: &'static str, binary: &Path, host_port: u16, dir: &Path) -> Started {
    let prepared = runner::prepare(&operator_pod(host_port), &secrets(), dir, binary).unwrap();
    let admin = SocketAddr::from((prepared.ip, fixtures::ADMIN_PORT));
    let advertise = prepared
        .env
        .iter()
        .find(|(k, _)| k == "RUCHE_ADVERTISE")
        .map(|(_, v)| v.clone())
        .unwrap();
    let log = prepared.log.clone();
    let process = Supervised::spawn(prepared.command, &log).unwrap();
    wait_live(admin, &process, &log).await;
    Started {
        label,
        process,
        log,
        admin,
        advertise,
    }
}

/// The field names of a JSON object.
fn keys(body: &str) -> BTreeSet<String> {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

async fn report_of(admin: &HttpAdmin, target: &AdminTarget, label: &str) -> NodeReport {
    admin
        .report(target)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"))
}

/// Drives one node through what the operator does to nodes, checking what it reports back.
async fn drive(node: &Started) {
    let label = node.label;
    let admin = HttpAdmin::new(Duration::from_secs(3));
    let target = AdminTarget {
        url: format!("http://{}", node.admin),
        token: ADMIN_TOKEN.into(),
    };
    let r = report_of(&admin, &target, label).await;
    assert_eq!(r.status.phase, "Ready", "{label}");
    assert_eq!(r.status.capacity_slots, 100, "{label}");
    assert_eq!(r.status.reserved_slots, 0, "{label}");
    assert_eq!(
        r.status.advertise.as_deref(),
        Some(node.advertise.as_str()),
        "{label}"
    );
    assert!(
        r.rooms.is_empty(),
        "{label}: no participant, so no live room"
    );

    assignments(&admin, &target, label).await;

    admin
        .advertise(&target, "127.0.0.9:4000")
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let r = report_of(&admin, &target, label).await;
    assert_eq!(
        r.status.advertise.as_deref(),
        Some("127.0.0.9:4000"),
        "{label}"
    );
    assert!(
        admin.advertise(&target, "0.0.0.0:4000").await.is_err(),
        "{label}: an unspecified address is refused"
    );

    admin
        .drain(&target, Some(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let drained = wait::until(
        &format!("{label} to be Drained"),
        Duration::from_secs(5),
        || async {
            let r = admin.report(&target).await.map_err(|e| e.to_string())?;
            if r.status.phase == "Drained" {
                Ok(r)
            } else {
                Err(r.status.phase)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        drained
            .status
            .drain_deadline_seconds
            .is_some_and(|s| s <= 60),
        "{label}: {:?}",
        drained.status
    );
    let ready = http::get(node.admin, "/readyz", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(ready.status, 503, "{label}: a drained node is not ready");

    admin
        .undrain(&target)
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let r = report_of(&admin, &target, label).await;
    assert_eq!(r.status.phase, "Ready", "{label}");
    let ready = http::get(node.admin, "/readyz", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(ready.status, 200, "{label}");

    let forged = AdminTarget {
        token: "not-the-admin-token".into(),
        ..target.clone()
    };
    assert!(
        admin.report(&forged).await.is_err(),
        "{label}: a wrong token is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_answers_the_operator_as_a_media_node_does() {
    let binaries = (
        process::binary("RUCHE_MEDIA_NODE_BIN", "ruche-media-node"),
        process::binary("RUCHE_ADMIN_STAND_IN_BIN", "ruche-admin-stand-in"),
    );
    let (Ok(media_node), Ok(stand_in)) = binaries else {
        eprintln!("skipped (binaries not built yet): {binaries:?}");
        return;
    };
    let dir = test_dir("stand-in-test");
    let real = start_from_pod("media node", &media_node, HOST_PORT + 10, &dir).await;
    let fake = start_from_pod("stand-in", &stand_in, HOST_PORT + 20, &dir).await;
    for node in [&real, &fake] {
        drive(node).await;
    }
    // The same fields, so that what the operator reads does not drift apart.
    for path in ["/v1/status", "/v1/rooms"] {
        let mut fields = Vec::new();
        for node in [&real, &fake] {
            let r = http::get_authorized(node.admin, path, ADMIN_TOKEN, Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{} {path}: {}", node.label, r.body);
            fields.push(keys(&r.body));
        }
        assert_eq!(
            fields[0], fields[1],
            "{path}: media node vs stand-in fields"
        );
    }
    for node in [&real, &fake] {
        let status = node.process.terminate(Duration::from_secs(5)).await;
        assert_eq!(
            status.map(exit_code),
            Some(0),
            "{} exits cleanly on SIGTERM:\n{}",
            node.label,
            tail(&node.log, 40)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The versioned assignment list: taken, reported, an older one refused, a newer one replaces
/// it (a room that leaves the list frees its slots).
async fn assignments(admin: &HttpAdmin, target: &AdminTarget, label: &str) {
    let list = |seq: u32, rooms: &[(&str, u32)]| AssignmentList {
        version: ListVersion::new(3, seq),
        rooms: rooms
            .iter()
            .map(|(room, slots)| Assignment {
                room: (*room).to_string(),
                slots: *slots,
                leaving: false,
            })
            .collect(),
    };
    let accepted = admin
        .assign(target, &list(2, &[("a", 4), ("b", 6)]))
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_eq!(accepted.version, ListVersion::new(3, 2), "{label}");
    let r = report_of(admin, target, label).await;
    assert_eq!(
        (r.status.reserved_slots, r.status.used_slots),
        (10, 10),
        "{label}"
    );
    assert_eq!(
        r.status.assignments_version,
        ListVersion::new(3, 2),
        "{label}"
    );
    match admin.assign(target, &list(1, &[])).await {
        Err(AdminError::Stale { stale, .. }) => assert_eq!(
            (stale.current, stale.refused),
            (ListVersion::new(3, 2), ListVersion::new(3, 1)),
            "{label}"
        ),
        other => panic!("{label}: an older list must be refused, got {other:?}"),
    }

    admin
        .assign(target, &list(3, &[("b", 6)]))
        .await
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let r = report_of(admin, target, label).await;
    assert_eq!(r.status.reserved_slots, 6, "{label}: room a left the list");
}
