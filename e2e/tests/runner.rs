//! The pod runner turns the pod the operator builds into a running media node on a loopback
//! address. No cluster needed: this runs with every `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use kube::api::ObjectMeta;
use ruche_crds::{MediaFleet, MediaNode, MediaNodeSpec, NodeCapacity};
use ruche_e2e::process::{self, Supervised, exit_code, tail};
use ruche_e2e::runner::{self, Objects};
use ruche_e2e::{fixtures, http, wait};
use ruche_operator::build::pod::{ExternalPort, pod};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_pod_runs_as_a_media_node_on_loopback() {
    let binary = match process::binary("RUCHE_MEDIA_NODE_BIN", "ruche-media-node") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("skipped (no media node binary yet): {e}");
            return;
        }
    };
    let mut fleet: MediaFleet =
        serde_json::from_value(fixtures::fleet("f", HOST_PORT - 1)).unwrap();
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
    let mut pod = pod(&fleet, &node, ExternalPort::Host(HOST_PORT)).unwrap();
    pod.metadata.uid = Some("pod-uid-0123456789".into());

    let mut objects = Objects::default();
    objects.secrets.insert(
        "f-join-key".into(),
        BTreeMap::from([("token-key".to_string(), JOIN_KEY.as_bytes().to_vec())]),
    );
    objects.secrets.insert(
        "f-admin-token".into(),
        BTreeMap::from([("admin-token".to_string(), ADMIN_TOKEN.as_bytes().to_vec())]),
    );
    let dir = std::env::temp_dir().join(format!("ruche-e2e-runner-test-{}", std::process::id()));
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
    let up = wait::until(
        "the media node's /livez",
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
        node_process.kill();
        panic!("{e}\n{}", tail(&log, 40));
    }
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
