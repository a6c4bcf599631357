//! A container's environment as a kubelet builds it, and the rewrites that put a pod's
//! addresses and files on this machine.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, ContainerPort, EnvVar, Pod};
use kube::ResourceExt as _;

use super::ApiServer;
use super::volumes::Objects;

/// What a kubelet and its container runtime give every container before its own `env`: the
/// API server's address (`KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, here the
/// loopback API server's, since the `kubernetes` Service has no endpoints), `HOSTNAME` (the
/// pod's name) and `HOME` (`/`, as for an image user without a home: a client library that
/// looks for `~/.kube/config` finds none, as in a container).
pub fn kubelet_env(pod: &Pod, api_server: Option<&ApiServer>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(server) = api_server {
        env.push(("KUBERNETES_SERVICE_HOST".to_string(), server.host.clone()));
        env.push((
            "KUBERNETES_SERVICE_PORT".to_string(),
            server.port.to_string(),
        ));
    }
    env.push(("HOSTNAME".to_string(), pod.name_any()));
    env.push(("HOME".to_string(), "/".to_string()));
    env
}

/// The value of a `fieldRef`, as a kubelet resolves it, with `ip` as pod and host IP.
pub(crate) fn field_value(pod: &Pod, path: &str, ip: Ipv4Addr) -> Result<String, String> {
    let meta = &pod.metadata;
    let from_map = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
        let key = path
            .strip_prefix(prefix)
            .and_then(|k| k.strip_suffix("']"))
            .unwrap_or_default();
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    Ok(match path {
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => ip.to_string(),
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        p if p.starts_with("metadata.labels['") => {
            from_map(meta.labels.as_ref(), "metadata.labels['")
        }
        p if p.starts_with("metadata.annotations['") => {
            from_map(meta.annotations.as_ref(), "metadata.annotations['")
        }
        other => {
            return Err(format!(
                "fieldRef {other} is not supported by the e2e runner"
            ));
        }
    })
}

fn lookup(
    source: &HashMap<String, BTreeMap<String, Vec<u8>>>,
    what: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    match source.get(name).and_then(|d| d.get(key)) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional.unwrap_or(false) => Ok(None),
        None => Err(format!("{what} {name} has no key {key}")),
    }
}

/// The container's environment as a kubelet builds it (`envFrom`, then `env` in order with
/// `$(VAR)` expansion), then bind addresses and volume paths rewritten for this machine.
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
    mounts: &[(String, PathBuf)],
    objects: &Objects,
) -> Result<Vec<(String, String)>, String> {
    resolve_env_with(&[], pod, container, ip, ports, mounts, objects)
}

/// [`resolve_env`] on top of `base` (what [`kubelet_env`] gives): the container's own
/// variables may use and override those.
pub fn resolve_env_with(
    base: &[(String, String)],
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
    mounts: &[(String, PathBuf)],
    objects: &Objects,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    for (name, value) in base {
        define(&mut env, &mut vars, name.clone(), value.clone());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            objects.secrets.get(&s.name)
        } else if let Some(c) = &from.config_map_ref {
            objects.config_maps.get(&c.name)
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            let value = String::from_utf8_lossy(v).into_owned();
            define(&mut env, &mut vars, format!("{prefix}{k}"), value);
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let resolved = if let Some(from) = value_from {
            if let Some(f) = &from.field_ref {
                Some(field_value(pod, &f.field_path, ip)?)
            } else if let Some(s) = &from.secret_key_ref {
                lookup(&objects.secrets, "Secret", &s.name, &s.key, s.optional)?
            } else if let Some(c) = &from.config_map_key_ref {
                lookup(
                    &objects.config_maps,
                    "ConfigMap",
                    &c.name,
                    &c.key,
                    c.optional,
                )?
            } else {
                eprintln!("e2e runner: env {name}: resourceFieldRef is given as 0");
                Some("0".to_string())
            }
        } else {
            Some(expand(value.as_deref().unwrap_or_default(), &vars))
        };
        if let Some(v) = resolved {
            define(&mut env, &mut vars, name.clone(), v);
        }
    }
    Ok(env
        .into_iter()
        .map(|(k, v)| {
            let v = rewrite(&v, ip, ports, mounts);
            (k, v)
        })
        .collect())
}

/// Defines (or redefines, in place) a variable.
fn define(
    env: &mut Vec<(String, String)>,
    vars: &mut HashMap<String, String>,
    name: String,
    value: String,
) {
    vars.insert(name.clone(), value.clone());
    match env.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`; `$(NAME)` is NAME's value if it
/// is defined, else left as written; any other `$` is literal.
pub fn expand<S: std::hash::BuildHasher>(input: &str, vars: &HashMap<String, String, S>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push(b'$');
                    i += 2;
                }
                b'(' => {
                    if let Some(close) = bytes[i + 2..].iter().position(|b| *b == b')') {
                        let name = &input[i + 2..i + 2 + close];
                        match vars.get(name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => out.extend_from_slice(&bytes[i..i + 3 + close]),
                        }
                        i += 3 + close;
                    } else {
                        out.extend_from_slice(b"$(");
                        i += 2;
                    }
                }
                other => {
                    out.push(b'$');
                    out.push(other);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites a wildcard bind address (`0.0.0.0:P`, `[::]:P`) to `ip:Q` (Q: container port P's
/// host port, else P), and a path under a volume's mount path to where the volume was written.
pub fn rewrite(
    value: &str,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
    mounts: &[(String, PathBuf)],
) -> String {
    let wildcard = value
        .strip_prefix("0.0.0.0:")
        .or_else(|| value.strip_prefix("[::]:"));
    if let Some(port) = wildcard.and_then(|p| p.parse::<i32>().ok()) {
        let mapped = ports
            .iter()
            .filter(|p| p.container_port == port)
            .find_map(|p| p.host_port.filter(|h| *h > 0))
            .unwrap_or(port);
        return format!("{ip}:{mapped}");
    }
    for (mount, local) in mounts {
        if value == mount {
            return local.display().to_string();
        }
        if let Some(rest) = value
            .strip_prefix(mount.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return local.join(rest).display().to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let v = vars(&[("A", "x"), ("HOST", "127.0.0.10")]);
        assert_eq!(expand("$(HOST):21000", &v), "127.0.0.10:21000");
        assert_eq!(expand("$(A)$(A)", &v), "xx");
        assert_eq!(expand("$(MISSING)", &v), "$(MISSING)");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$$", &v), "$");
        assert_eq!(expand("a$b", &v), "a$b");
        assert_eq!(expand("$(A", &v), "$(A");
        assert_eq!(expand("end$", &v), "end$");
        assert_eq!(expand("é$(A)é", &v), "éxé");
    }

    fn port(container: i32, host: Option<i32>, protocol: &str) -> ContainerPort {
        ContainerPort {
            container_port: container,
            host_port: host,
            protocol: Some(protocol.into()),
            ..Default::default()
        }
    }

    #[test]
    fn bind_addresses_and_mount_paths_are_rewritten() {
        let ip = Ipv4Addr::new(127, 0, 0, 12);
        let ports = [
            port(7882, Some(21003), "UDP"),
            port(7880, Some(21003), "TCP"),
            port(7881, None, "TCP"),
        ];
        let mounts = vec![(
            "/etc/ruche/join-key".to_string(),
            PathBuf::from("/tmp/x/join-key"),
        )];
        assert_eq!(
            rewrite("0.0.0.0:7882", ip, &ports, &mounts),
            "127.0.0.12:21003"
        );
        assert_eq!(
            rewrite("0.0.0.0:7880", ip, &ports, &mounts),
            "127.0.0.12:21003"
        );
        assert_eq!(
            rewrite("0.0.0.0:7881", ip, &ports, &mounts),
            "127.0.0.12:7881"
        );
        assert_eq!(
            rewrite("0.0.0.0:9999", ip, &ports, &mounts),
            "127.0.0.12:9999"
        );
        assert_eq!(
            rewrite("/etc/ruche/join-key/token-key", ip, &ports, &mounts),
            "/tmp/x/join-key/token-key"
        );
        assert_eq!(
            rewrite("/etc/ruche/join-keys", ip, &ports, &mounts),
            "/etc/ruche/join-keys"
        );
        assert_eq!(rewrite("100", ip, &ports, &mounts), "100");
    }

    #[test]
    fn environment_resolves_like_a_kubelet() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "n1", "namespace": "ns", "uid": "u1", "labels": { "zone": "a" } },
            "spec": {
                "containers": [{
                    "name": "media-node",
                    "image": "img",
                    "ports": [
                        { "containerPort": 7882, "hostPort": 21001, "protocol": "UDP" },
                        { "containerPort": 7880, "hostPort": 21001, "protocol": "TCP" }
                    ],
                    "env": [
                        { "name": "RUCHE_HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
                        { "name": "RUCHE_MEDIA_BIND", "value": "0.0.0.0:7882" },
                        { "name": "RUCHE_ADVERTISE", "value": "$(RUCHE_HOST_IP):21001" },
                        { "name": "RUCHE_HTTP_BIND", "value": "0.0.0.0:7880" },
                        { "name": "EARLY", "value": "$(LATE)" },
                        { "name": "LATE", "value": "l" },
                        { "name": "ZONE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['zone']" } } },
                        { "name": "KEY", "value": "/etc/ruche/join-key/token-key" },
                        { "name": "FROM_SECRET", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }
                    ],
                    "volumeMounts": [{ "name": "join-key", "mountPath": "/etc/ruche/join-key" }]
                }],
                "volumes": [{ "name": "join-key", "secret": { "secretName": "s" } }]
            }
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let ports = container.ports.clone().unwrap();
        let mut objects = Objects::default();
        objects.secrets.insert(
            "s".into(),
            BTreeMap::from([("k".to_string(), b"v".to_vec())]),
        );
        let mounts = vec![(
            "/etc/ruche/join-key".to_string(),
            PathBuf::from("/t/join-key"),
        )];
        let ip = Ipv4Addr::new(127, 0, 0, 10);
        let env = resolve_env(&pod, container, ip, &ports, &mounts, &objects).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RUCHE_HOST_IP"), Some("127.0.0.10"));
        assert_eq!(get("RUCHE_MEDIA_BIND"), Some("127.0.0.10:21001"));
        assert_eq!(get("RUCHE_ADVERTISE"), Some("127.0.0.10:21001"));
        assert_eq!(get("RUCHE_HTTP_BIND"), Some("127.0.0.10:21001"));
        assert_eq!(
            get("EARLY"),
            Some("$(LATE)"),
            "only earlier variables expand"
        );
        assert_eq!(get("ZONE"), Some("a"));
        assert_eq!(get("KEY"), Some("/t/join-key/token-key"));
        assert_eq!(get("FROM_SECRET"), Some("v"));
    }

    #[test]
    fn the_kubelet_gives_the_api_server_and_the_pod_comes_first_with_its_own() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "ruche-operator-abc-x1", "namespace": "ruche-system", "uid": "u" },
            "spec": { "containers": [{
                "name": "operator",
                "ports": [{ "name": "http", "containerPort": 8080 }],
                "env": [
                    { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "RUCHE_HTTP_BIND", "value": "0.0.0.0:8080" },
                    { "name": "API", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)" },
                    { "name": "HOME", "value": "/home/operator" }
                ]
            }] }
        }))
        .unwrap();
        let server = ApiServer {
            host: "127.0.0.1".into(),
            port: 28689,
        };
        let base = kubelet_env(&pod, Some(&server));
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let ports = container.ports.clone().unwrap();
        let ip = Ipv4Addr::new(127, 0, 0, 14);
        let env =
            resolve_env_with(&base, &pod, container, ip, &ports, &[], &Objects::default()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("127.0.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT"), Some("28689"));
        assert_eq!(get("HOSTNAME"), Some("ruche-operator-abc-x1"));
        assert_eq!(
            get("HOME"),
            Some("/home/operator"),
            "the container's own wins"
        );
        assert_eq!(get("POD_NAME"), Some("ruche-operator-abc-x1"));
        assert_eq!(get("POD_NAMESPACE"), Some("ruche-system"));
        assert_eq!(get("POD_IP"), Some("127.0.0.14"));
        assert_eq!(get("RUCHE_HTTP_BIND"), Some("127.0.0.14:8080"));
        assert_eq!(get("API"), Some("127.0.0.1:28689"));
        assert_eq!(
            env.iter().filter(|(n, _)| n == "HOME").count(),
            1,
            "redefined in place"
        );
        assert!(
            !kubelet_env(&pod, None)
                .iter()
                .any(|(n, _)| n.starts_with("KUBERNETES_")),
            "no API server given, none passed on"
        );
    }
}
