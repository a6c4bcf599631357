//! A pod's volumes, as a kubelet materialises them: the Secrets, ConfigMaps and
//! ServiceAccount tokens it refers to, fetched with the harness's credentials, and the files
//! each volume holds, written under the pod's directory.
//!
//! The `kube-api-access-*` projected volume that the ServiceAccount admission plugin adds to
//! every pod is written as a kubelet writes it: `token` from the TokenRequest API, bound to the
//! pod (its name and UID), `ca.crt` from the `kube-root-ca.crt` ConfigMap the
//! controller-manager publishes in each namespace, and `namespace` from the downward API.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt as _};
use tokio::sync::watch;

use super::SECRET_WAIT;
use super::env::field_value;
use crate::error::{Error, Result};

/// The ConfigMap the controller-manager publishes in every namespace with the cluster's CA.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// The mode of a volume's files when the pod sets none (0644).
const DEFAULT_MODE: u32 = 0o644;

/// The Secrets, ConfigMaps and ServiceAccount tokens a pod refers to, keyed by name.
#[derive(Default, Debug)]
pub struct Objects {
    /// Secret data by Secret name.
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMap data (and binary data) by ConfigMap name.
    pub config_maps: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// ServiceAccount tokens of projected volumes, by [`token_key`].
    pub tokens: HashMap<String, String>,
}

/// The key of a projected ServiceAccount token in [`Objects::tokens`].
pub fn token_key(volume: &str, path: &str) -> String {
    format!("{volume}/{path}")
}

/// A Secret or ConfigMap a pod refers to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Reference {
    /// A Secret (else a ConfigMap).
    pub secret: bool,
    /// Its name.
    pub name: String,
    /// Whether the pod cannot start without it (the runner waits for it).
    pub required: bool,
}

/// A ServiceAccount token a projected volume asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenSource {
    /// Its [`token_key`].
    pub key: String,
    /// The audience asked for (the API server's when absent).
    pub audience: Option<String>,
    /// Its lifetime.
    pub expiration_seconds: Option<i64>,
}

/// The volumes the container mounts.
fn mounted_volumes<'a>(pod: &'a Pod, container: &Container) -> Vec<&'a Volume> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter(|v| {
            container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == v.name)
        })
        .collect()
}

/// What the pod refers to, each once (required if any reference requires it). A projected
/// ConfigMap is required only if it is [`ROOT_CA_CONFIG_MAP`]: in-cluster clients need the CA,
/// and the controller-manager may publish it just after the pod appears; any other projected
/// ConfigMap that does not exist is skipped (this API server build adds
/// `openshift-service-ca.crt` to every pod, which nothing publishes here).
pub(crate) fn references(pod: &Pod, container: &Container) -> Vec<Reference> {
    let mut refs: BTreeMap<(bool, String), bool> = BTreeMap::new();
    let mut add = |secret: bool, name: &str, required: bool| {
        *refs.entry((secret, name.to_string())).or_default() |= required;
    };
    let required = |optional: Option<bool>| !optional.unwrap_or(false);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(s) = &v.secret {
            add(
                true,
                s.secret_name.as_deref().unwrap_or_default(),
                required(s.optional),
            );
        }
        if let Some(c) = &v.config_map {
            add(false, &c.name, required(c.optional));
        }
    }
    for v in mounted_volumes(pod, container) {
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &source.secret {
                add(true, &s.name, required(s.optional));
            }
            if let Some(c) = &source.config_map {
                add(false, &c.name, c.name == ROOT_CA_CONFIG_MAP);
            }
        }
    }
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(s) = &from.secret_key_ref {
            add(true, &s.name, required(s.optional));
        }
        if let Some(c) = &from.config_map_key_ref {
            add(false, &c.name, required(c.optional));
        }
    }
    for e in container.env_from.iter().flatten() {
        if let Some(s) = &e.secret_ref {
            add(true, &s.name, required(s.optional));
        }
        if let Some(c) = &e.config_map_ref {
            add(false, &c.name, required(c.optional));
        }
    }
    refs.into_iter()
        .map(|((secret, name), required)| Reference {
            secret,
            name,
            required,
        })
        .collect()
}

/// The ServiceAccount tokens the container's projected volumes ask for.
pub(crate) fn token_sources(pod: &Pod, container: &Container) -> Vec<TokenSource> {
    let mut tokens = Vec::new();
    for v in mounted_volumes(pod, container) {
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(t) = &source.service_account_token {
                tokens.push(TokenSource {
                    key: token_key(&v.name, &t.path),
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds,
                });
            }
        }
    }
    tokens
}

/// Fetches what the pod refers to, waiting up to [`SECRET_WAIT`] for required objects (the
/// operator may create a fleet's Secrets after its first pods), and asks the TokenRequest API
/// for the tokens of its projected volumes, bound to the pod. `None` if the pod is deleted
/// meanwhile.
pub(crate) async fn fetch(
    client: &Client,
    pod: &Pod,
    container: &Container,
    updates: &watch::Receiver<Option<Arc<Pod>>>,
) -> Result<Option<Objects>> {
    let namespace = pod.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let deadline = Instant::now() + SECRET_WAIT;
    let mut objects = Objects::default();
    for Reference {
        secret: is_secret,
        name,
        required,
    } in references(pod, container)
    {
        loop {
            let found = if is_secret {
                secrets.get_opt(&name).await.map(|s| s.map(secret_data))
            } else {
                config_maps
                    .get_opt(&name)
                    .await
                    .map(|c| c.map(config_map_data))
            };
            let what = if is_secret { "Secret" } else { "ConfigMap" };
            match found {
                Ok(Some(data)) => {
                    if is_secret {
                        objects.secrets.insert(name.clone(), data);
                    } else {
                        objects.config_maps.insert(name.clone(), data);
                    }
                    break;
                }
                Ok(None) if !required => break,
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    if updates.borrow().is_none() {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(None) => {
                    return Err(Error::Setup(format!(
                        "{what} {namespace}/{name} still missing after {SECRET_WAIT:?}"
                    )));
                }
                Err(e) => {
                    return Err(Error::Setup(format!(
                        "reading {what} {namespace}/{name}: {e}"
                    )));
                }
            }
        }
    }
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    for source in token_sources(pod, container) {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: source.audience.iter().cloned().collect(),
                expiration_seconds: source.expiration_seconds,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name_any()),
                    uid: pod.uid(),
                }),
            },
            ..Default::default()
        };
        let answer: TokenRequest = match accounts
            .create_subresource("token", &account, &PostParams::default(), &request)
            .await
        {
            Ok(answer) => answer,
            // A pod deleted meanwhile: the API refuses to bind a token to it.
            Err(_) if updates.borrow().is_none() => return Ok(None),
            Err(e) => {
                return Err(Error::Setup(format!(
                    "TokenRequest for ServiceAccount {namespace}/{account}, bound to pod {}: {e}",
                    pod.name_any()
                )));
            }
        };
        let token = answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Setup("the TokenRequest API returned no token".into()))?;
        objects.tokens.insert(source.key, token);
    }
    Ok(Some(objects))
}

fn secret_data(s: Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

fn config_map_data(c: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = c
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        c.binary_data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    data
}

/// One file of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeFile {
    /// Its path inside the volume.
    pub path: String,
    /// Its content.
    pub bytes: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// What the runner writes for one volume: its files, and what it left out and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumePlan {
    /// The files.
    pub files: Vec<VolumeFile>,
    /// Sources or items left out, each with the reason.
    pub skipped: Vec<String>,
}

/// Where a container's volume is on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The container's `mountPath`, without a trailing slash.
    pub mount_path: String,
    /// The directory (or, with a `subPath`, the file or directory) written for it.
    pub local: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The permission bits of a Kubernetes `mode` (decimal in the API, e.g. 420 for 0644).
fn mode_bits(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(default, |m| m & 0o7777)
}

/// The files of a Secret's or ConfigMap's data: every key, or the `items` asked for. A key an
/// item names must exist unless `optional`.
fn key_files(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: bool,
    plan: &mut VolumePlan,
) -> Result<(), String> {
    match items {
        None => {
            for (key, bytes) in data {
                plan.files.push(VolumeFile {
                    path: key.clone(),
                    bytes: bytes.clone(),
                    mode: default_mode,
                });
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(bytes) => plan.files.push(VolumeFile {
                        path: item.path.clone(),
                        bytes: bytes.clone(),
                        mode: mode_bits(item.mode, default_mode),
                    }),
                    None if optional => plan
                        .skipped
                        .push(format!("{what}: no key {} (optional)", item.key)),
                    None => return Err(format!("{what}: key {} not found", item.key)),
                }
            }
        }
    }
    Ok(())
}

/// The downward API's files: pod fields (`ip` as pod and host IP); resource fields are left
/// out.
fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    ip: Ipv4Addr,
    plan: &mut VolumePlan,
) -> Result<(), String> {
    for item in items {
        let mode = mode_bits(item.mode, default_mode);
        if let Some(f) = &item.field_ref {
            plan.files.push(VolumeFile {
                path: item.path.clone(),
                bytes: field_value(pod, &f.field_path, ip)?.into_bytes(),
                mode,
            });
        } else {
            plan.skipped.push(format!(
                "downward API {}: only fieldRef is supported",
                item.path
            ));
        }
    }
    Ok(())
}

/// The files of `volume`, from `objects` (see the module documentation).
pub fn plan_volume(
    pod: &Pod,
    volume: &Volume,
    objects: &Objects,
    ip: Ipv4Addr,
) -> Result<VolumePlan, String> {
    let mut plan = VolumePlan::default();
    let name = &volume.name;
    if let Some(s) = &volume.secret {
        let secret = s.secret_name.as_deref().unwrap_or_default();
        let mode = mode_bits(s.default_mode, DEFAULT_MODE);
        match objects.secrets.get(secret) {
            Some(data) => key_files(
                &format!("Secret {secret}"),
                data,
                s.items.as_ref(),
                mode,
                s.optional.unwrap_or(false),
                &mut plan,
            )?,
            None => plan
                .skipped
                .push(format!("Secret {secret} does not exist (optional)")),
        }
    } else if let Some(c) = &volume.config_map {
        let mode = mode_bits(c.default_mode, DEFAULT_MODE);
        match objects.config_maps.get(&c.name) {
            Some(data) => key_files(
                &format!("ConfigMap {}", c.name),
                data,
                c.items.as_ref(),
                mode,
                c.optional.unwrap_or(false),
                &mut plan,
            )?,
            None => plan
                .skipped
                .push(format!("ConfigMap {} does not exist (optional)", c.name)),
        }
    } else if let Some(d) = &volume.downward_api {
        let mode = mode_bits(d.default_mode, DEFAULT_MODE);
        downward_files(
            pod,
            d.items.as_deref().unwrap_or_default(),
            mode,
            ip,
            &mut plan,
        )?;
    } else if let Some(p) = &volume.projected {
        let mode = mode_bits(p.default_mode, DEFAULT_MODE);
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let token = objects
                    .tokens
                    .get(&token_key(name, &t.path))
                    .ok_or_else(|| format!("no ServiceAccount token for {name}/{}", t.path))?;
                plan.files.push(VolumeFile {
                    path: t.path.clone(),
                    bytes: token.clone().into_bytes(),
                    mode,
                });
            } else if let Some(c) = &source.config_map {
                match objects.config_maps.get(&c.name) {
                    Some(data) => key_files(
                        &format!("ConfigMap {}", c.name),
                        data,
                        c.items.as_ref(),
                        mode,
                        c.optional.unwrap_or(false),
                        &mut plan,
                    )?,
                    None => plan.skipped.push(format!(
                        "ConfigMap {} does not exist: source skipped",
                        c.name
                    )),
                }
            } else if let Some(s) = &source.secret {
                match objects.secrets.get(&s.name) {
                    Some(data) => key_files(
                        &format!("Secret {}", s.name),
                        data,
                        s.items.as_ref(),
                        mode,
                        s.optional.unwrap_or(false),
                        &mut plan,
                    )?,
                    None => plan
                        .skipped
                        .push(format!("Secret {} does not exist (optional)", s.name)),
                }
            } else if let Some(d) = &source.downward_api {
                downward_files(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    mode,
                    ip,
                    &mut plan,
                )?;
            } else {
                plan.skipped.push(
                    "a projected source other than a token, ConfigMap, Secret or downward API"
                        .into(),
                );
            }
        }
    } else if volume.empty_dir.is_none() {
        plan.skipped.push(
            "neither a Secret, a ConfigMap, a projected nor a downward API volume, nor an \
             emptyDir: mounted as an empty directory"
                .into(),
        );
    }
    Ok(plan)
}

/// Writes the container's mounted volumes under `root` (one directory per volume); returns
/// where each mount is, longest mount path first, and what was left out (`volume: why`).
pub(crate) fn write_volumes(
    pod: &Pod,
    container: &Container,
    objects: &Objects,
    root: &Path,
    ip: Ipv4Addr,
) -> Result<(Vec<Mount>, Vec<String>)> {
    let volumes: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .collect();
    let mut mounts = Vec::new();
    let mut skipped = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == m.name) else {
            return Err(Error::Setup(format!(
                "volume mount {} names no volume",
                m.name
            )));
        };
        let dir = root.join(&volume.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let plan = plan_volume(pod, volume, objects, ip)
            .map_err(|e| Error::Setup(format!("volume {}: {e}", volume.name)))?;
        for file in &plan.files {
            write_file(&dir.join(&file.path), &file.bytes, file.mode)?;
        }
        skipped.extend(
            plan.skipped
                .into_iter()
                .map(|why| format!("{}: {why}", volume.name)),
        );
        let local = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(sub),
            None => dir,
        };
        let mount_path = m.mount_path.trim_end_matches('/');
        if !mount_path.is_empty() {
            mounts.push(Mount {
                mount_path: mount_path.to_string(),
                local,
                read_only: m.read_only.unwrap_or(false),
            });
        }
    }
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    skipped.sort();
    skipped.dedup();
    Ok((mounts, skipped))
}

fn write_file(file: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    std::fs::write(file, bytes)
        .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("cannot set the mode of {}", file.display()), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A pod as the ServiceAccount admission plugin of this API server build leaves it: the
    /// `kube-api-access-*` projected volume with its fourth, OpenShift source.
    fn operator_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "ruche-operator-67996875c4-g6v76",
                "namespace": "ruche-system",
                "uid": "536e7895-35d6-407f-90f5-51b90f7370ba"
            },
            "spec": {
                "serviceAccountName": "ruche-operator",
                "containers": [{
                    "name": "operator",
                    "volumeMounts": [{
                        "name": "kube-api-access-s2mz9",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": true
                    }]
                }],
                "volumes": [{
                    "name": "kube-api-access-s2mz9",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                            { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                            { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
                            { "configMap": { "name": "openshift-service-ca.crt", "items": [{ "key": "service-ca.crt", "path": "service-ca.crt" }] } }
                        ]
                    }
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_service_account_volume_is_materialised_as_a_kubelet_does() {
        let pod = operator_pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            references(&pod, container),
            vec![
                Reference {
                    secret: false,
                    name: "kube-root-ca.crt".into(),
                    required: true
                },
                Reference {
                    secret: false,
                    name: "openshift-service-ca.crt".into(),
                    required: false
                },
            ],
            "the CA is awaited, the OpenShift one is not"
        );
        assert_eq!(
            token_sources(&pod, container),
            vec![TokenSource {
                key: "kube-api-access-s2mz9/token".into(),
                audience: None,
                expiration_seconds: Some(3607),
            }]
        );
        let mut objects = Objects::default();
        objects.config_maps.insert(
            "kube-root-ca.crt".into(),
            BTreeMap::from([(
                "ca.crt".to_string(),
                b"-----BEGIN CERTIFICATE-----".to_vec(),
            )]),
        );
        objects
            .tokens
            .insert("kube-api-access-s2mz9/token".into(), "eyJ.token".into());
        let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let plan = plan_volume(&pod, volume, &objects, Ipv4Addr::new(127, 0, 0, 12)).unwrap();
        let files: Vec<(&str, &[u8], u32)> = plan
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.bytes.as_slice(), f.mode))
            .collect();
        assert_eq!(
            files,
            vec![
                ("token", b"eyJ.token".as_slice(), 0o644),
                ("ca.crt", b"-----BEGIN CERTIFICATE-----".as_slice(), 0o644),
                ("namespace", b"ruche-system".as_slice(), 0o644),
            ]
        );
        assert_eq!(
            plan.skipped,
            vec!["ConfigMap openshift-service-ca.crt does not exist: source skipped".to_string()]
        );

        let root = std::env::temp_dir().join(format!("ruche-e2e-volumes-{}", std::process::id()));
        let (mounts, skipped) = write_volumes(
            &pod,
            container,
            &objects,
            &root,
            Ipv4Addr::new(127, 0, 0, 12),
        )
        .unwrap();
        let dir = root.join("kube-api-access-s2mz9");
        assert_eq!(
            mounts,
            vec![Mount {
                mount_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                local: dir.clone(),
                read_only: true,
            }]
        );
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(
            std::fs::read_to_string(dir.join("namespace")).unwrap(),
            "ruche-system"
        );
        let mode = std::fs::metadata(dir.join("token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_token_or_a_missing_key_is_an_error_and_item_modes_win() {
        let pod = operator_pod();
        let volume = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let ip = Ipv4Addr::new(127, 0, 0, 12);
        let err = plan_volume(&pod, volume, &Objects::default(), ip).unwrap_err();
        assert!(err.contains("no ServiceAccount token"), "{err}");

        let mut objects = Objects::default();
        objects
            .tokens
            .insert("kube-api-access-s2mz9/token".into(), "t".into());
        objects.config_maps.insert(
            "kube-root-ca.crt".into(),
            BTreeMap::from([("other".to_string(), b"x".to_vec())]),
        );
        let err = plan_volume(&pod, volume, &objects, ip).unwrap_err();
        assert!(err.contains("key ca.crt not found"), "{err}");

        let secret: Volume = serde_json::from_value(json!({
            "name": "keys",
            "secret": { "secretName": "s", "defaultMode": 256, "items": [
                { "key": "a", "path": "dir/a" },
                { "key": "b", "path": "b", "mode": 384 }
            ] }
        }))
        .unwrap();
        objects.secrets.insert(
            "s".into(),
            BTreeMap::from([
                ("a".to_string(), b"1".to_vec()),
                ("b".to_string(), b"2".to_vec()),
                ("c".to_string(), b"3".to_vec()),
            ]),
        );
        let plan = plan_volume(&pod, &secret, &objects, ip).unwrap();
        let files: Vec<(&str, u32)> = plan
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode))
            .collect();
        assert_eq!(files, vec![("dir/a", 0o400), ("b", 0o600)]);
    }

    #[test]
    fn references_are_listed_once_and_required_if_any_use_requires_them() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "n1", "namespace": "ns" },
            "spec": {
                "containers": [{
                    "name": "media-node",
                    "env": [
                        { "name": "A", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k", "optional": true } } },
                        { "name": "B", "valueFrom": { "configMapKeyRef": { "name": "c", "key": "k", "optional": true } } }
                    ],
                    "volumeMounts": [{ "name": "join-key", "mountPath": "/etc/ruche/join-key" }]
                }],
                "volumes": [{ "name": "join-key", "secret": { "secretName": "s" } }]
            }
        }))
        .unwrap();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            references(&pod, container),
            vec![
                Reference {
                    secret: false,
                    name: "c".into(),
                    required: false
                },
                Reference {
                    secret: true,
                    name: "s".into(),
                    required: true
                },
            ]
        );
        assert!(token_sources(&pod, container).is_empty());
    }
}
