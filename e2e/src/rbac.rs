//! The operator's identity: the RBAC of `manifests/rbac/`, re-targeted at the test namespace,
//! a token for its ServiceAccount from the TokenRequest API, and a kubeconfig that uses it.
//!
//! The transformation is what a namespace-scoped install does (see the kustomization's
//! comment): namespaced objects go to the test namespace; cluster-scoped ones get a name
//! unique to the test (and a label the clean-up deletes them by); the binding of the
//! `ruche-operator` ClusterRole becomes a RoleBinding in the test namespace.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::error::{Error, Result, is_conflict};

/// The operator's ServiceAccount, as `manifests/rbac/service-account.yaml` names it.
pub const SERVICE_ACCOUNT: &str = "ruche-operator";
/// The ClusterRole a namespace-scoped install binds with a RoleBinding.
pub const NAMESPACED_ROLE: &str = "ruche-operator";
/// The label put on every object the harness creates for a test, valued with its namespace.
pub const TEST_LABEL: &str = "e2e.ruche.dev/namespace";
/// How long the operator's token is valid.
pub const TOKEN_SECONDS: i64 = 4 * 3600;

/// The RBAC objects of one test, ready to create.
#[derive(Debug, Default)]
pub struct Rbac {
    /// ServiceAccounts (namespaced).
    pub service_accounts: Vec<ServiceAccount>,
    /// Roles (namespaced).
    pub roles: Vec<Role>,
    /// RoleBindings (namespaced).
    pub role_bindings: Vec<RoleBinding>,
    /// ClusterRoles, renamed for the test.
    pub cluster_roles: Vec<ClusterRole>,
    /// ClusterRoleBindings, renamed for the test.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// The name a cluster-scoped object gets in the test of namespace `namespace`.
pub fn cluster_name(name: &str, namespace: &str) -> String {
    format!("{name}-{namespace}")
}

/// Reads `manifests/rbac/` (the files its kustomization lists) and re-targets it at
/// `namespace`.
pub fn load(namespace: &str) -> Result<Rbac> {
    let dir = crate::workspace().join("manifests").join("rbac");
    let kustomization = crate::crds::yaml_documents(&dir.join("kustomization.yaml"))?;
    let resources: Vec<PathBuf> = kustomization
        .first()
        .and_then(|k| k.get("resources"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::Setup(format!(
                "{}/kustomization.yaml lists no resources",
                dir.display()
            ))
        })?
        .iter()
        .filter_map(Value::as_str)
        .map(|f| dir.join(f))
        .collect();
    let mut docs = Vec::new();
    for file in &resources {
        docs.extend(crate::crds::yaml_documents(file)?);
    }
    retarget(docs, namespace, &dir)
}

/// Re-targets the RBAC documents at `namespace` (see the module documentation).
pub fn retarget(docs: Vec<Value>, namespace: &str, source: &Path) -> Result<Rbac> {
    let cluster_roles: Vec<String> = docs
        .iter()
        .filter(|d| kind(d) == "ClusterRole")
        .filter_map(|d| d.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    let rename = |name: &str| {
        if cluster_roles.iter().any(|r| r == name) {
            cluster_name(name, namespace)
        } else {
            name.to_string()
        }
    };
    let bad = |doc: &Value, e: serde_json::Error| {
        Error::Setup(format!(
            "{}: {} {}: {e}",
            source.display(),
            kind(doc),
            doc.pointer("/metadata/name").unwrap_or(&Value::Null)
        ))
    };
    let mut rbac = Rbac::default();
    for mut doc in docs {
        label(&mut doc, namespace);
        match kind(&doc).as_str() {
            "ServiceAccount" => {
                set(&mut doc, "/metadata/namespace", namespace);
                rbac.service_accounts
                    .push(serde_json::from_value(doc.clone()).map_err(|e| bad(&doc, e))?);
            }
            "Role" => {
                set(&mut doc, "/metadata/namespace", namespace);
                rbac.roles
                    .push(serde_json::from_value(doc.clone()).map_err(|e| bad(&doc, e))?);
            }
            "ClusterRole" => {
                let name = name_of(&doc);
                set(&mut doc, "/metadata/name", &rename(&name));
                rbac.cluster_roles
                    .push(serde_json::from_value(doc.clone()).map_err(|e| bad(&doc, e))?);
            }
            "RoleBinding" => {
                set(&mut doc, "/metadata/namespace", namespace);
                fix_binding(&mut doc, namespace, &rename);
                rbac.role_bindings
                    .push(serde_json::from_value(doc.clone()).map_err(|e| bad(&doc, e))?);
            }
            "ClusterRoleBinding" => {
                let role = doc
                    .pointer("/roleRef/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                fix_binding(&mut doc, namespace, &rename);
                if role == NAMESPACED_ROLE {
                    // A namespace-scoped run: bind the ClusterRole in the namespace only.
                    doc["kind"] = json!("RoleBinding");
                    set(&mut doc, "/metadata/namespace", namespace);
                    rbac.role_bindings
                        .push(serde_json::from_value(doc.clone()).map_err(|e| bad(&doc, e))?);
                } else {
                    let name = name_of(&doc);
                    set(&mut doc, "/metadata/name", &cluster_name(&name, namespace));
                    rbac.cluster_role_bindings
                        .push(serde_json::from_value(doc.clone()).map_err(|e| bad(&doc, e))?);
                }
            }
            other => {
                return Err(Error::Setup(format!(
                    "{}: unexpected kind {other}: teach e2e/src/rbac.rs about it",
                    source.display()
                )));
            }
        }
    }
    if !rbac
        .service_accounts
        .iter()
        .any(|s| s.metadata.name.as_deref() == Some(SERVICE_ACCOUNT))
    {
        return Err(Error::Setup(format!(
            "{}: no ServiceAccount {SERVICE_ACCOUNT}",
            source.display()
        )));
    }
    Ok(rbac)
}

fn kind(doc: &Value) -> String {
    doc.get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn name_of(doc: &Value) -> String {
    doc.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn set(doc: &mut Value, pointer: &str, value: &str) {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = json!(value);
    } else if let Some(field) = pointer.strip_prefix("/metadata/") {
        if !doc["metadata"].is_object() {
            doc["metadata"] = json!({});
        }
        doc["metadata"][field] = json!(value);
    }
}

fn label(doc: &mut Value, namespace: &str) {
    if !doc["metadata"].is_object() {
        doc["metadata"] = json!({});
    }
    if !doc["metadata"]["labels"].is_object() {
        doc["metadata"]["labels"] = json!({});
    }
    doc["metadata"]["labels"][TEST_LABEL] = json!(namespace);
}

/// Points a binding's ServiceAccount subjects at `namespace` and its ClusterRole at the
/// renamed one.
fn fix_binding(doc: &mut Value, namespace: &str, rename: &dyn Fn(&str) -> String) {
    if let Some(subjects) = doc.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount") {
                s["namespace"] = json!(namespace);
            }
        }
    }
    let is_cluster_role =
        doc.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole");
    if is_cluster_role && let Some(name) = doc.pointer("/roleRef/name").and_then(Value::as_str) {
        let renamed = rename(name);
        doc["roleRef"]["name"] = json!(renamed);
    }
}

/// Creates the RBAC objects (an object that already exists is left as it is).
pub async fn create(client: &Client, namespace: &str, rbac: &Rbac) -> Result<()> {
    let pp = PostParams::default();
    for o in &rbac.cluster_roles {
        ignore_existing(Api::<ClusterRole>::all(client.clone()).create(&pp, o).await)?;
    }
    for o in &rbac.cluster_role_bindings {
        ignore_existing(
            Api::<ClusterRoleBinding>::all(client.clone())
                .create(&pp, o)
                .await,
        )?;
    }
    for o in &rbac.service_accounts {
        ignore_existing(
            Api::<ServiceAccount>::namespaced(client.clone(), namespace)
                .create(&pp, o)
                .await,
        )?;
    }
    for o in &rbac.roles {
        ignore_existing(
            Api::<Role>::namespaced(client.clone(), namespace)
                .create(&pp, o)
                .await,
        )?;
    }
    for o in &rbac.role_bindings {
        ignore_existing(
            Api::<RoleBinding>::namespaced(client.clone(), namespace)
                .create(&pp, o)
                .await,
        )?;
    }
    Ok(())
}

/// A create that found the object already there is fine.
fn ignore_existing<T>(result: kube::Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}

/// Deletes the cluster-scoped RBAC objects of the test of `namespace` (by label).
pub async fn delete_cluster_scoped(client: &Client, namespace: &str) -> Result<()> {
    let lp = ListParams::default().labels(&format!("{TEST_LABEL}={namespace}"));
    let dp = DeleteParams::default();
    Api::<ClusterRoleBinding>::all(client.clone())
        .delete_collection(&dp, &lp)
        .await?;
    Api::<ClusterRole>::all(client.clone())
        .delete_collection(&dp, &lp)
        .await?;
    Ok(())
}

/// Whether the API server enforces RBAC on the operator's ServiceAccount: a
/// SubjectAccessReview for something `manifests/rbac/` does not grant (deleting a
/// MediaFleet) must be denied. A bare API server runs with `--authorization-mode=AlwaysAllow`
/// unless told otherwise, and then the suite proves nothing about the RBAC: `false` says so.
pub async fn enforced(client: &Client, namespace: &str) -> Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!(
                "system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
            )),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some("ruche.dev".into()),
                resource: Some("mediafleets".into()),
                verb: Some("delete".into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| Error::Setup(format!("SubjectAccessReview: {e}")))?;
    Ok(!answer.status.is_some_and(|s| s.allowed))
}

/// A bearer token for the operator's ServiceAccount, from the TokenRequest API.
pub async fn token(client: &Client, namespace: &str) -> Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(TOKEN_SECONDS),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let answer: TokenRequest = api
        .create_subresource("token", SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            Error::Setup(format!(
                "TokenRequest for ServiceAccount {namespace}/{SERVICE_ACCOUNT}: {e}"
            ))
        })?;
    answer
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Setup("the TokenRequest API returned no token".into()))
}

/// Writes a kubeconfig for the operator: the harness's cluster entry (server, CA) and the
/// ServiceAccount's bearer token, namespace `namespace`. Readable by the owner only.
pub fn write_kubeconfig(
    path: &Path,
    cluster_entry: &Value,
    token: &str,
    namespace: &str,
) -> Result<()> {
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "e2e", "cluster": cluster_entry }],
        "users": [{ "name": SERVICE_ACCOUNT, "user": { "token": token } }],
        "contexts": [{
            "name": SERVICE_ACCOUNT,
            "context": { "cluster": "e2e", "user": SERVICE_ACCOUNT, "namespace": namespace }
        }],
        "current-context": SERVICE_ACCOUNT,
        "preferences": BTreeMap::<String, Value>::new(),
    });
    // JSON is YAML: every kubeconfig reader takes it.
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Setup(format!("cannot render the operator's kubeconfig: {e}")))?;
    std::fs::write(path, text)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("cannot chmod {}", path.display()), e))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_manifests_retarget_to_a_namespace_scoped_install() {
        let rbac = match load("ns1") {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        let names = |v: Vec<Option<String>>| v.into_iter().flatten().collect::<Vec<_>>();
        // The ClusterRoles keep their rules under per-test names.
        let roles = names(
            rbac.cluster_roles
                .iter()
                .map(|r| r.metadata.name.clone())
                .collect(),
        );
        assert!(
            roles.contains(&"ruche-operator-ns1".to_string()),
            "{roles:?}"
        );
        assert!(
            roles.contains(&"ruche-operator-nodes-ns1".to_string()),
            "{roles:?}"
        );
        // The operator's ClusterRole is bound in the namespace only.
        let bound_here = rbac.role_bindings.iter().any(|b| {
            b.role_ref.kind == "ClusterRole"
                && b.role_ref.name == "ruche-operator-ns1"
                && b.metadata.namespace.as_deref() == Some("ns1")
        });
        assert!(bound_here, "{:?}", rbac.role_bindings);
        assert!(
            rbac.cluster_role_bindings
                .iter()
                .all(|b| b.role_ref.name != "ruche-operator-ns1"),
            "no cluster-wide binding of the operator's role"
        );
        for b in &rbac.cluster_role_bindings {
            assert!(
                b.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with("-ns1"))
            );
            for s in b.subjects.iter().flatten() {
                assert_eq!(s.namespace.as_deref(), Some("ns1"));
            }
        }
        for b in &rbac.role_bindings {
            for s in b.subjects.iter().flatten() {
                assert_eq!(s.namespace.as_deref(), Some("ns1"));
            }
        }
        assert!(
            rbac.service_accounts
                .iter()
                .all(|s| s.metadata.namespace.as_deref() == Some("ns1"))
        );
        let labelled = rbac.cluster_roles.iter().all(|r| {
            r.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(TEST_LABEL))
                .is_some_and(|v| v == "ns1")
        });
        assert!(labelled, "cluster-scoped objects carry the clean-up label");
    }
}
