//! Finding the cluster `RUCHE_E2E_KUBECONFIG` names, or saying loudly why the suite is skipped.

use std::io::Write as _;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::{Error, Result};

/// How long the harness waits for a TCP connection to the API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the reachability probe (`GET /version`) may take in all.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Set (to anything) to skip the suite even when [`KUBECONFIG_ENV`] is set.
pub const SKIP_ENV: &str = "RUCHE_E2E_SKIP";

/// A reachable cluster, with the harness's own (administrator) credentials.
#[derive(Clone)]
pub struct Cluster {
    /// A client with the harness's credentials.
    pub client: Client,
    /// The configuration the client was built from (to build more clients, e.g. on another
    /// runtime for clean-up).
    pub config: Config,
    /// The `cluster` entry of the harness's kubeconfig (server, CA, TLS server name), as JSON,
    /// copied into the operator's kubeconfig.
    pub cluster_entry: serde_json::Value,
    /// The API server's address, for messages.
    pub server: String,
}

/// What [`connect`] found.
pub enum Connection {
    /// A cluster that answered.
    Ready(Box<Cluster>),
    /// No cluster to run against, and why.
    Skip(String),
}

/// The environment variable naming the kubeconfig of the cluster the suite may use. The
/// suite never falls back to `KUBECONFIG`: a developer's shell often points it at a real
/// cluster, and the suite creates CRDs, namespaces and ClusterRoles.
pub const KUBECONFIG_ENV: &str = "RUCHE_E2E_KUBECONFIG";

/// Connects to the cluster [`KUBECONFIG_ENV`] names.
///
/// Returns [`Connection::Skip`] when it is unset (even if `KUBECONFIG` is set), unreadable,
/// or names a server that cannot be reached within [`PROBE_TIMEOUT`]. A server that answers
/// but refuses the harness's credentials is an error, not a skip: someone meant to run the
/// suite.
pub async fn connect() -> Result<Connection> {
    if std::env::var_os(SKIP_ENV).is_some_and(|v| !v.is_empty()) {
        return Ok(Connection::Skip(format!("{SKIP_ENV} is set")));
    }
    let path = match std::env::var(KUBECONFIG_ENV) {
        Ok(p) if !p.trim().is_empty() => p,
        _ => {
            let ignored = if std::env::var_os("KUBECONFIG").is_some() {
                " (KUBECONFIG is set but never used by the suite)"
            } else {
                ""
            };
            return Ok(Connection::Skip(format!(
                "{KUBECONFIG_ENV} is not set{ignored}: name the kubeconfig of a cluster the \
                 suite may create namespaces, CRDs and ClusterRoles in, such as the one \
                 ../shared/k8s/up prints"
            )));
        }
    };
    let kubeconfig = match Kubeconfig::read_from(&path) {
        Ok(k) => k,
        Err(e) => {
            return Ok(Connection::Skip(format!(
                "{KUBECONFIG_ENV}={path} cannot be read: {e}"
            )));
        }
    };
    let cluster_entry = match current_cluster(&kubeconfig) {
        Ok(c) => c,
        Err(why) => return Ok(Connection::Skip(format!("{KUBECONFIG_ENV}={path}: {why}"))),
    };
    let mut config =
        match Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await {
            Ok(c) => c,
            Err(e) => {
                return Ok(Connection::Skip(format!(
                    "{KUBECONFIG_ENV}={path} is not usable: {e}"
                )));
            }
        };
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let server = config.cluster_url.to_string();
    let client = match Client::try_from(config.clone()) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Connection::Skip(format!(
                "{KUBECONFIG_ENV}={path}: cannot build a client for {server}: {e}"
            )));
        }
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Err(_) => Ok(Connection::Skip(format!(
            "the API server {server} ({KUBECONFIG_ENV}={path}) did not answer within {PROBE_TIMEOUT:?}"
        ))),
        Ok(Err(kube::Error::Api(status))) => Err(Error::Setup(format!(
            "the API server {server} ({KUBECONFIG_ENV}={path}) answered but refused the harness: \
             HTTP {} {}: {}",
            status.code, status.reason, status.message
        ))),
        Ok(Err(e)) => Ok(Connection::Skip(format!(
            "the API server {server} ({KUBECONFIG_ENV}={path}) is unreachable: {e}"
        ))),
        Ok(Ok(version)) => {
            eprintln!(
                "e2e: cluster {server} answers (Kubernetes {}.{}, {})",
                version.major, version.minor, version.git_version
            );
            Ok(Connection::Ready(Box::new(Cluster {
                client,
                config,
                cluster_entry,
                server,
            })))
        }
    }
}

/// The `cluster` entry of the kubeconfig's current context, as JSON.
fn current_cluster(kubeconfig: &Kubeconfig) -> Result<serde_json::Value, String> {
    let context_name = kubeconfig
        .current_context
        .as_deref()
        .ok_or("it has no current-context")?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| format!("its current-context {context_name} is not defined"))?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| format!("its cluster {} is not defined", context.cluster))?;
    let mut cluster = cluster.clone();
    // Extensions name things of the harness's own tooling; the operator has no use for them.
    cluster.extensions = None;
    if cluster.server.is_none() {
        return Err(format!("its cluster {} has no server", context.cluster));
    }
    serde_json::to_value(&cluster).map_err(|e| format!("cannot copy its cluster entry: {e}"))
}

/// Prints, straight to the process's stderr (past the test harness's output capture, so
/// `cargo test` shows it even for passing tests), that `test` was skipped and why.
pub fn print_skip(test: &str, why: &str) {
    print_skip_as(test, "no cluster", why);
}

/// [`print_skip`] with another cause in the heading (`SKIPPED (<cause>): <why>`).
pub fn print_skip_as(test: &str, cause: &str, why: &str) {
    let line = format!(
        "\n**********************************************************************\n\
         SKIPPED ({cause}): {why}\n  test: {test}\n\
         **********************************************************************\n"
    );
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(line.as_bytes());
    let _ = stderr.flush();
}
