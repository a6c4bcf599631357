//! Least privilege, proven from the API server's audit log: every permission the operator's
//! RBAC grants was used by an operator during the run, no request of an operator was denied,
//! and the only Secrets an operator touched are the ones it makes for its fleets.
//!
//! The control plane writes the log when started by `scripts/audited-k8s.sh` (policy:
//! `e2e/audit-policy.yaml`, one JSON line per ServiceAccount request at Metadata level). The
//! check is pure: rules and requests in, a [`Report`] out; `src/bin/least-privilege.rs` reads
//! the files and prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;

/// Suffixes of the Secrets the operator makes for a fleet (`<fleet>-join-key`,
/// `<fleet>-admin-token`), the only ones it may read.
pub const OWNED_SECRET_SUFFIXES: [&str; 2] = ["-join-key", "-admin-token"];

/// Why the inputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A line of the audit log is not an audit event.
    #[error("audit log line {line}: {message}")]
    Event {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// An RBAC file is not YAML of RBAC objects.
    #[error("{file}: {message}")]
    Rbac {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// One permission: a verb on a resource (with its subresource, `pods/status`) of an API group
/// (`""` for the core group).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    /// API group.
    pub group: String,
    /// Resource, with `/subresource` if any.
    pub resource: String,
    /// Verb.
    pub verb: String,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {}/{}", self.verb, group, self.resource)
    }
}

/// A permission and the role (file and object) that grants it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// Where it is granted: `manifests/rbac/cluster-role.yaml: ClusterRole ruche-operator`.
    pub role: String,
    /// What it grants.
    pub permission: Permission,
}

#[derive(Deserialize)]
struct RbacObject {
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRule {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
}

/// The permissions the Roles and ClusterRoles of `text` (YAML, several documents) grant.
/// Lines with Helm template actions are dropped first, so a chart template whose rules are
/// plain YAML reads as its rendering would (names aside).
pub fn grants(file: &str, text: &str) -> Result<Vec<Grant>, AuditError> {
    let plain: String =
        text.lines()
            .filter(|line| !line.contains("{{"))
            .fold(String::new(), |mut out, line| {
                out.push_str(line);
                out.push('\n');
                out
            });
    let mut out = Vec::new();
    for document in plain.split("\n---") {
        if document.trim().is_empty() || document.lines().all(|l| l.trim_start().starts_with('#')) {
            continue;
        }
        let object: RbacObject =
            serde_saphyr::from_str(document).map_err(|e| AuditError::Rbac {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
        if object.kind != "ClusterRole" && object.kind != "Role" {
            continue;
        }
        let role = format!("{file}: {} {}", object.kind, object.metadata.name);
        for rule in &object.rules {
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    for verb in &rule.verbs {
                        out.push(Grant {
                            role: role.clone(),
                            permission: Permission {
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                            },
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One request, as the audit log has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `system:serviceaccount:<namespace>:<name>`.
    pub user: String,
    /// What it did, to what.
    pub permission: Permission,
    /// The object's namespace, if namespaced.
    pub namespace: Option<String>,
    /// The object's name, if named.
    pub name: Option<String>,
    /// The HTTP status answered.
    pub code: u16,
    /// Whether authorization refused it (RBAC), as opposed to an admission refusal (a Pod
    /// Security level, say) answered 403 too.
    pub forbidden: bool,
    /// When it completed (RFC 3339, UTC, as the log writes it: ordered as text).
    pub time: String,
    /// The request's URI, for the report.
    pub uri: String,
}

/// The deletion of an RBAC binding, from the log: its subjects' requests after it are an
/// uninstall's, refused because their permissions were taken away first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRemoved {
    /// The users it bound (`system:serviceaccount:<namespace>:<name>`).
    pub subjects: Vec<String>,
    /// When.
    pub time: String,
}

/// What the audit log says: the operators' requests, and when bindings were deleted.
#[derive(Clone, Debug, Default)]
pub struct Log {
    /// The operators' resource requests.
    pub requests: Vec<Request>,
    /// RoleBindings and ClusterRoleBindings deleted, by anyone.
    pub bindings_removed: Vec<BindingRemoved>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    stage: String,
    #[serde(default)]
    stage_timestamp: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    verb: String,
    #[serde(rename = "requestURI")]
    request_uri: String,
    user: User,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    /// The written object, for the writes of bindings the policy logs at Request level.
    #[serde(default)]
    request_object: Option<Binding>,
}

#[derive(Deserialize)]
struct Binding {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    subjects: Vec<Subject>,
}

#[derive(Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
struct User {
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: Option<String>,
    #[serde(default)]
    api_group: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: u16,
}

/// The completed resource requests of the audit log `text` (JSON lines) made by users
/// `is_operator` accepts, and the RBAC bindings deleted. Requests to non-resource URLs (`/api`,
/// `/healthz`) carry no object and are left out: RBAC rules on resources do not cover them.
pub fn read_log(text: &str, is_operator: impl Fn(&str) -> bool) -> Result<Log, AuditError> {
    let mut log = Log::default();
    // Each binding's ServiceAccount subjects, by namespace and name, as last written.
    let mut bindings: BTreeMap<(Option<String>, String), Vec<String>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(line).map_err(|e| AuditError::Event {
            line: i + 1,
            message: e.to_string(),
        })?;
        if event.stage != "ResponseComplete" {
            continue;
        }
        let Some(object) = event.object_ref else {
            continue;
        };
        let code = event.response_status.map_or(0, |s| s.code);
        let group = object.api_group.unwrap_or_default();
        if group == "rbac.authorization.k8s.io"
            && matches!(
                object.resource.as_str(),
                "rolebindings" | "clusterrolebindings"
            )
            && (200..300).contains(&code)
        {
            let key = (
                object.namespace.clone(),
                object.name.clone().unwrap_or_default(),
            );
            if event.verb == "delete" {
                log.bindings_removed.push(BindingRemoved {
                    subjects: bindings.remove(&key).unwrap_or_default(),
                    time: event.stage_timestamp.clone(),
                });
            } else if let Some(binding) = &event.request_object {
                // A create names its object in the body only.
                let name = if key.1.is_empty() {
                    binding.metadata.name.clone()
                } else {
                    key.1.clone()
                };
                let subjects = binding
                    .subjects
                    .iter()
                    .filter(|s| s.kind == "ServiceAccount")
                    .map(|s| format!("system:serviceaccount:{}:{}", s.namespace, s.name))
                    .collect();
                bindings.insert((key.0, name), subjects);
            }
        }
        if !is_operator(&event.user.username) {
            continue;
        }
        let resource = match &object.subresource {
            Some(sub) => format!("{}/{sub}", object.resource),
            None => object.resource.clone(),
        };
        log.requests.push(Request {
            user: event.user.username,
            permission: Permission {
                group,
                resource,
                verb: event.verb,
            },
            namespace: object.namespace,
            name: object.name,
            code,
            forbidden: event
                .annotations
                .get("authorization.k8s.io/decision")
                .is_some_and(|d| d == "forbid"),
            time: event.stage_timestamp,
            uri: event.request_uri,
        });
    }
    Ok(log)
}

/// The operators' requests of the audit log `text` (see [`read_log`]).
pub fn requests(
    text: &str,
    is_operator: impl Fn(&str) -> bool,
) -> Result<Vec<Request>, AuditError> {
    read_log(text, is_operator).map(|log| log.requests)
}

/// Whether `username` is an operator's ServiceAccount: `ruche-operator` as `manifests/rbac`
/// names it, or `ruche` as the chart names a release called `ruche`.
pub fn is_operator(username: &str, service_accounts: &[&str]) -> bool {
    username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(_, name)| service_accounts.contains(&name))
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests of operators read.
    pub requests: usize,
    /// How many requests used each granted permission.
    pub used: BTreeMap<Permission, usize>,
    /// Grants no request used.
    pub unused: Vec<Grant>,
    /// Requests refused by authorization while the operator's bindings were in place.
    pub denied: Vec<Request>,
    /// Requests refused by authorization after a binding of the operator's was deleted: an
    /// uninstall taking permissions away before the pods are gone.
    pub denied_after_uninstall: Vec<Request>,
    /// Requests on a Secret the operator does not make.
    pub foreign_secrets: Vec<Request>,
    /// Requests refused and then allowed, the same request of the same operator, within
    /// [`TRANSIENT_DENIAL`]: an API server just (re)started, whose authorizer had not loaded
    /// the RBAC objects yet. Listed, not failed.
    pub denied_while_starting: Vec<Request>,
    /// Requests allowed by no grant (and not denied: granted by some other binding).
    pub ungranted: Vec<Request>,
}

impl Report {
    /// Whether least privilege holds.
    pub fn holds(&self) -> bool {
        self.unused.is_empty() && self.held_as_used()
    }

    /// Whether what was used holds: no denial, no foreign Secret, nothing ungranted (for a run
    /// that exercises part of the operator only, such as the chaos suite's, where unused rules
    /// prove nothing).
    pub fn held_as_used(&self) -> bool {
        self.requests > 0
            && self.denied.is_empty()
            && self.foreign_secrets.is_empty()
            && self.ungranted.is_empty()
    }
}

/// The owners whose `<owner>/finalizers` `update` the API server checks (without a request of
/// its own in the log) when the operator creates an object it owns with `blockOwnerDeletion`:
/// the OwnerReferencesPermissionEnforcement admission, which `scripts/audited-k8s.sh` enables
/// as OpenShift does by default. A MediaFleet owns its MediaNodes, Secrets and
/// PodDisruptionBudget; a MediaNode its pod and Service.
pub const OWNED_BY: [(&str, &str); 5] = [
    ("medianodes", "mediafleets"),
    ("secrets", "mediafleets"),
    ("poddisruptionbudgets", "mediafleets"),
    ("pods", "medianodes"),
    ("services", "medianodes"),
];

/// The permissions a successful request used besides its own verb, which the API server
/// checks without logging them apart: `create` for a server-side apply that created its object
/// (answered 201), and `update` of the owner's finalizers for a created object it owns.
fn implied(request: &Request) -> Vec<Permission> {
    let p = &request.permission;
    let created = p.verb == "create" || (p.verb == "patch" && request.code == 201);
    if !created || !(200..300).contains(&request.code) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if p.verb == "patch" {
        out.push(Permission {
            verb: "create".into(),
            ..p.clone()
        });
    }
    for (owned, owner) in OWNED_BY {
        if p.resource == owned {
            out.push(Permission {
                group: "ruche.dev".into(),
                resource: format!("{owner}/finalizers"),
                verb: "update".into(),
            });
        }
    }
    out
}

/// How soon the same request must be allowed after a refusal for the refusal to be an API
/// server's start (its RBAC caches still loading) rather than a missing permission.
pub const TRANSIENT_DENIAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `denied` was followed, within [`TRANSIENT_DENIAL`], by the same request of the
/// same user allowed.
fn allowed_soon_after(denied: &Request, requests: &[Request]) -> bool {
    let Ok(at) = denied.time.parse::<k8s_openapi::jiff::Timestamp>() else {
        return false;
    };
    requests.iter().any(|r| {
        !r.forbidden
            && (200..300).contains(&r.code)
            && r.user == denied.user
            && r.permission == denied.permission
            && r.namespace == denied.namespace
            && r.name == denied.name
            && r.time
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .and_then(|t| std::time::Duration::try_from(t.duration_since(at)).ok())
                .is_some_and(|after| after <= TRANSIENT_DENIAL)
    })
}

/// Checks the operators' requests of `log` against `grants`.
pub fn check(grants: &[Grant], log: &Log) -> Report {
    let granted: BTreeSet<&Permission> = grants.iter().map(|g| &g.permission).collect();
    let mut report = Report {
        requests: log.requests.len(),
        ..Report::default()
    };
    for request in &log.requests {
        if request.forbidden {
            let uninstalled = log.bindings_removed.iter().any(|removed| {
                removed.time <= request.time && removed.subjects.contains(&request.user)
            });
            if uninstalled {
                report.denied_after_uninstall.push(request.clone());
            } else if allowed_soon_after(request, &log.requests) {
                report.denied_while_starting.push(request.clone());
            } else {
                report.denied.push(request.clone());
            }
            continue;
        }
        if request.permission.group.is_empty()
            && request.permission.resource.split('/').next() == Some("secrets")
            && !request.name.as_deref().is_some_and(|name| {
                OWNED_SECRET_SUFFIXES
                    .iter()
                    .any(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
            })
        {
            report.foreign_secrets.push(request.clone());
        }
        if granted.contains(&request.permission) {
            *report.used.entry(request.permission.clone()).or_default() += 1;
        } else {
            report.ungranted.push(request.clone());
        }
        for permission in implied(request) {
            if granted.contains(&permission) {
                *report.used.entry(permission).or_default() += 1;
            }
        }
    }
    report.unused = grants
        .iter()
        .filter(|g| !report.used.contains_key(&g.permission))
        .cloned()
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "
# A comment document header
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ $name }}
  labels:
    {{- include \"labels\" . | nindent 4 }}
rules:
  - apiGroups: [ruche.dev]
    resources: [rooms, rooms/status]
    verbs: [get, patch]
  - apiGroups: [\"\"]
    resources: [secrets]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: x
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: x }
";

    fn event(user: &str, verb: &str, group: &str, resource: &str, name: &str, code: u16) -> String {
        event_at(
            "2026-11-29T10:00:00.000000Z",
            user,
            verb,
            group,
            resource,
            name,
            code,
        )
    }

    /// An event at `time`; a 403 is an authorization refusal.
    fn event_at(
        time: &str,
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        name: &str,
        code: u16,
    ) -> String {
        let (resource, sub) = resource
            .split_once('/')
            .map_or((resource, None), |(r, s)| (r, Some(s)));
        let decision = if code == 403 { "forbid" } else { "allow" };
        serde_json::json!({
            "kind": "Event", "stage": "ResponseComplete", "verb": verb,
            "stageTimestamp": time,
            "annotations": { "authorization.k8s.io/decision": decision },
            "requestURI": format!("/apis/{group}/{resource}/{name}"),
            "user": { "username": user },
            "objectRef": { "resource": resource, "subresource": sub, "apiGroup": group,
                           "namespace": "ns", "name": name },
            "responseStatus": { "code": code }
        })
        .to_string()
    }

    const OPERATOR: &str = "system:serviceaccount:ns:ruche-operator";

    fn operator(user: &str) -> bool {
        is_operator(user, &["ruche-operator", "ruche"])
    }

    #[test]
    fn roles_are_read_through_template_lines() {
        let grants = grants("rbac.yaml", ROLE).unwrap();
        let permissions: Vec<String> = grants.iter().map(|g| g.permission.to_string()).collect();
        assert_eq!(
            permissions,
            [
                "get ruche.dev/rooms",
                "patch ruche.dev/rooms",
                "get ruche.dev/rooms/status",
                "patch ruche.dev/rooms/status",
                "get core/secrets",
            ]
        );
        assert_eq!(grants[0].role, "rbac.yaml: ClusterRole ");
    }

    #[test]
    fn every_grant_used_nothing_denied_is_least_privilege() {
        let grants = grants("rbac.yaml", ROLE).unwrap();
        let log = [
            event(OPERATOR, "get", "ruche.dev", "rooms", "r1", 200),
            event(OPERATOR, "patch", "ruche.dev", "rooms", "r1", 200),
            event(OPERATOR, "get", "ruche.dev", "rooms/status", "r1", 404),
            event(OPERATOR, "patch", "ruche.dev", "rooms/status", "r1", 200),
            event(OPERATOR, "get", "", "secrets", "visio-join-key", 200),
            // Someone else's requests do not count.
            event(
                "system:serviceaccount:ns:default",
                "delete",
                "",
                "pods",
                "p",
                403,
            ),
        ]
        .join("\n");
        let log = read_log(&log, operator).unwrap();
        assert_eq!(log.requests.len(), 5);
        let report = check(&grants, &log);
        assert!(report.holds(), "{report:?}");
    }

    #[test]
    fn a_refusal_the_same_request_gets_past_within_seconds_is_an_api_servers_start() {
        let grants = grants("rbac.yaml", ROLE).unwrap();
        let lease =
            |time: &str, code| event_at(time, OPERATOR, "get", "ruche.dev", "rooms", "r1", code);
        let soon = [
            lease("2026-11-29T10:00:00.000000Z", 403),
            lease("2026-11-29T10:00:00.600000Z", 200),
        ]
        .join("\n");
        let report = check(&grants, &read_log(&soon, operator).unwrap());
        assert!(report.denied.is_empty(), "{report:?}");
        assert_eq!(report.denied_while_starting.len(), 1);
        let late = [
            lease("2026-11-29T10:00:00.000000Z", 403),
            lease("2026-11-29T10:00:09.000000Z", 200),
        ]
        .join("\n");
        let report = check(&grants, &read_log(&late, operator).unwrap());
        assert_eq!(report.denied.len(), 1, "{report:?}");
        assert!(report.denied_while_starting.is_empty());
    }

    #[test]
    fn an_unused_grant_a_denial_and_a_foreign_secret_each_fail_the_check() {
        let grants = grants("rbac.yaml", ROLE).unwrap();
        let log = [
            event(OPERATOR, "get", "ruche.dev", "rooms", "r1", 200),
            event(OPERATOR, "patch", "ruche.dev", "rooms/status", "r1", 200),
            event(OPERATOR, "get", "", "secrets", "database-password", 200),
            event(OPERATOR, "list", "", "nodes", "", 403),
            event(OPERATOR, "watch", "", "configmaps", "", 200),
        ]
        .join("\n");
        let report = check(&grants, &read_log(&log, operator).unwrap());
        assert!(!report.holds());
        let unused: Vec<String> = report
            .unused
            .iter()
            .map(|g| g.permission.to_string())
            .collect();
        assert_eq!(
            unused,
            ["patch ruche.dev/rooms", "get ruche.dev/rooms/status"]
        );
        assert_eq!(report.denied.len(), 1);
        assert_eq!(report.denied[0].permission.to_string(), "list core/nodes");
        assert_eq!(
            report.foreign_secrets[0].name.as_deref(),
            Some("database-password")
        );
        assert_eq!(
            report.ungranted[0].permission.to_string(),
            "watch core/configmaps"
        );
    }

    #[test]
    fn an_apply_that_creates_and_an_owned_create_use_what_the_api_server_checks() {
        let role = "
kind: ClusterRole
metadata: { name: r }
rules:
  - apiGroups: [\"\"]
    resources: [services]
    verbs: [create, patch]
  - apiGroups: [ruche.dev]
    resources: [medianodes/finalizers]
    verbs: [update]
";
        let grants = grants("r.yaml", role).unwrap();
        // An apply that only updates uses neither.
        let updated = event(OPERATOR, "patch", "", "services", "s", 200);
        let report = check(&grants, &read_log(&updated, operator).unwrap());
        assert_eq!(report.unused.len(), 2, "{report:?}");
        // One that creates uses both: create, and the owner's finalizers.
        let created = event(OPERATOR, "patch", "", "services", "s", 201);
        let report = check(&grants, &read_log(&created, operator).unwrap());
        assert!(report.holds(), "{report:?}");
    }

    #[test]
    fn an_admission_refusal_is_no_denial_and_an_uninstall_excuses_what_follows() {
        let grants = grants("rbac.yaml", ROLE).unwrap();
        let mut refused_by_pod_security: serde_json::Value =
            serde_json::from_str(&event(OPERATOR, "get", "ruche.dev", "rooms", "r1", 403)).unwrap();
        refused_by_pod_security["annotations"]["authorization.k8s.io/decision"] = "allow".into();
        let binding = |verb: &str, time: &str, name: Option<&str>| {
            serde_json::json!({
                "kind": "Event", "stage": "ResponseComplete", "verb": verb,
                "stageTimestamp": time,
                "requestURI": "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
                "user": { "username": "helm" },
                "objectRef": { "resource": "rolebindings", "apiGroup": "rbac.authorization.k8s.io",
                               "namespace": "ns", "name": name },
                "responseStatus": { "code": 200 },
                "requestObject": { "kind": "RoleBinding", "metadata": { "name": "ruche" },
                    "subjects": [
                        { "kind": "ServiceAccount", "name": "ruche-operator", "namespace": "ns" },
                        { "kind": "Group", "name": "system:masters" }
                    ] }
            })
            .to_string()
        };
        // Created (named in its body only), then deleted (named in the URL, no body).
        let created = binding("create", "2026-11-29T09:00:00.000000Z", None);
        let mut removed: serde_json::Value = serde_json::from_str(&binding(
            "delete",
            "2026-11-29T10:05:00.000000Z",
            Some("ruche"),
        ))
        .unwrap();
        removed["requestObject"] = serde_json::Value::Null;
        let at = |t: &str| event_at(t, OPERATOR, "update", "", "secrets", "f-join-key", 403);
        let log = [
            created,
            refused_by_pod_security.to_string(),
            at("2026-11-29T10:04:59.000000Z"),
            removed.to_string(),
            at("2026-11-29T10:05:01.000000Z"),
        ]
        .join("\n");
        let log = read_log(&log, operator).unwrap();
        assert_eq!(log.bindings_removed.len(), 1);
        assert_eq!(log.bindings_removed[0].subjects, [OPERATOR]);
        let report = check(&grants, &log);
        assert_eq!(report.denied.len(), 1, "{report:?}");
        assert_eq!(report.denied[0].time, "2026-11-29T10:04:59.000000Z");
        assert_eq!(report.denied_after_uninstall.len(), 1);
        // The admission refusal was authorized: it counts as a use of its permission.
        assert_eq!(
            report.used.get(&grants[0].permission).copied(),
            Some(1),
            "{report:?}"
        );
    }

    #[test]
    fn operators_are_told_by_their_service_account_name() {
        assert!(operator(
            "system:serviceaccount:ruche-system:ruche-operator"
        ));
        assert!(operator("system:serviceaccount:a:ruche"));
        assert!(!operator("system:serviceaccount:a:ruche-operator-x"));
        assert!(!operator("ruche-operator"));
        assert!(!operator("system:admin"));
    }

    #[test]
    fn a_line_that_is_not_an_event_is_named() {
        let err = requests("{\"kind\":\"Event\"}\nnot json", operator).unwrap_err();
        assert!(err.to_string().starts_with("audit log line 1: "), "{err}");
    }

    #[test]
    fn the_owned_secrets_are_the_ones_the_operator_makes() {
        use ruche_operator::build::labels;
        for made in [
            labels::join_key_secret("visio"),
            labels::admin_token_secret("visio"),
        ] {
            assert!(
                OWNED_SECRET_SUFFIXES
                    .iter()
                    .any(|s| made == format!("visio{s}")),
                "{made}"
            );
        }
    }
}
