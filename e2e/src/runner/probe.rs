//! Container probes as a kubelet runs them: where an HTTP GET or TCP probe goes on this
//! machine, how often, and when its verdict changes.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::http;

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// `GET path` on the address; 200 to 399 passes.
    HttpGet {
        /// Where.
        addr: SocketAddr,
        /// Path and query.
        path: String,
    },
    /// A TCP connection to the address.
    TcpSocket {
        /// Where.
        addr: SocketAddr,
    },
}

/// A probe of a container, with Kubernetes' defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What it does.
    pub action: ProbeAction,
    /// Before the first probe (`initialDelaySeconds`).
    pub initial_delay: Duration,
    /// Between probes (`periodSeconds`, default 10).
    pub period: Duration,
    /// For one probe (`timeoutSeconds`, default 1).
    pub timeout: Duration,
    /// Successes in a row that make it pass (`successThreshold`, default 1).
    pub success_threshold: u32,
    /// Failures in a row that make it fail (`failureThreshold`, default 3).
    pub failure_threshold: u32,
}

/// Seconds from the API (`None`, zero or negative: `default`).
fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(
        value
            .and_then(|v| u64::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default),
    )
}

fn threshold(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// The port a probe's `port` names (a number, or a container port's name), as reached on this
/// machine: the container port's `hostPort` if it has one (the runner maps container ports to
/// host ports, as a CNI port map does), else the port itself.
fn probe_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => match name.parse::<i32>() {
            Ok(p) => p,
            Err(_) => {
                ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .ok_or_else(|| format!("no container port is named {name}"))?
                    .container_port
            }
        },
    };
    let mapped = ports
        .iter()
        .filter(|p| p.container_port == number)
        .find_map(|p| p.host_port.filter(|h| *h > 0))
        .unwrap_or(number);
    u16::try_from(mapped).map_err(|_| format!("port {mapped} is out of range"))
}

impl ProbeSpec {
    /// The probe `probe` of a container whose pod has address `ip` and ports `ports`. Exec,
    /// gRPC and HTTPS probes are not supported (an error says which).
    pub fn parse(probe: &Probe, ip: Ipv4Addr, ports: &[ContainerPort]) -> Result<Self, String> {
        let action = if let Some(get) = &probe.http_get {
            if get
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("HTTP"))
            {
                return Err(format!(
                    "httpGet with scheme {:?} is not supported",
                    get.scheme
                ));
            }
            ProbeAction::HttpGet {
                addr: SocketAddr::from((ip, probe_port(&get.port, ports)?)),
                path: get
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            ProbeAction::TcpSocket {
                addr: SocketAddr::from((ip, probe_port(&tcp.port, ports)?)),
            }
        } else if probe.exec.is_some() {
            return Err("exec probes are not supported".into());
        } else if probe.grpc.is_some() {
            return Err("gRPC probes are not supported".into());
        } else {
            return Err("the probe has no action".into());
        };
        Ok(Self {
            action,
            initial_delay: probe
                .initial_delay_seconds
                .and_then(|v| u64::try_from(v).ok())
                .map_or(Duration::ZERO, Duration::from_secs),
            period: seconds(probe.period_seconds, 10),
            timeout: seconds(probe.timeout_seconds, 1),
            success_threshold: threshold(probe.success_threshold, 1),
            failure_threshold: threshold(probe.failure_threshold, 3),
        })
    }

    /// Probes once: `Err` says why it failed.
    pub async fn check(&self) -> Result<(), String> {
        match &self.action {
            ProbeAction::HttpGet { addr, path } => {
                match http::get(*addr, path, self.timeout).await {
                    Ok(r) if (200..400).contains(&r.status) => Ok(()),
                    Ok(r) => Err(format!("HTTP {}: {}", r.status, r.body.trim())),
                    Err(e) => Err(e.to_string()),
                }
            }
            ProbeAction::TcpSocket { addr } => {
                match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("connect to {addr}: {e}")),
                    Err(_) => Err(format!(
                        "connect to {addr}: no answer in {:?}",
                        self.timeout
                    )),
                }
            }
        }
    }

    /// Where the probe goes, for messages.
    pub fn target(&self) -> String {
        match &self.action {
            ProbeAction::HttpGet { addr, path } => format!("http://{addr}{path}"),
            ProbeAction::TcpSocket { addr } => format!("tcp://{addr}"),
        }
    }
}

/// A probe's verdict over time: it changes after `successThreshold` successes or
/// `failureThreshold` failures in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeState {
    passing: bool,
    successes: u32,
    failures: u32,
}

impl ProbeState {
    /// A readiness probe's start: failing until it first passes.
    pub fn readiness() -> Self {
        Self {
            passing: false,
            successes: 0,
            failures: 0,
        }
    }

    /// A liveness probe's start: passing until it fails often enough.
    pub fn liveness() -> Self {
        Self {
            passing: true,
            ..Self::readiness()
        }
    }

    /// The current verdict.
    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Records one probe's result; returns the new verdict if it changed.
    pub fn record(&mut self, spec: &ProbeSpec, ok: bool) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if !self.passing && self.successes >= spec.success_threshold {
                self.passing = true;
                return Some(true);
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.passing && self.failures >= spec.failure_threshold {
                self.passing = false;
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    fn probe(value: serde_json::Value) -> Probe {
        serde_json::from_value(value).unwrap()
    }

    fn ports() -> Vec<ContainerPort> {
        serde_json::from_value(json!([
            { "name": "http", "containerPort": 8080, "protocol": "TCP" },
            { "name": "signaling", "containerPort": 7880, "hostPort": 21003, "protocol": "TCP" }
        ]))
        .unwrap()
    }

    #[test]
    fn probes_of_the_operator_deployment_parse_with_defaults() {
        let ip = Ipv4Addr::new(127, 0, 0, 14);
        let readiness = ProbeSpec::parse(
            &probe(json!({ "httpGet": { "path": "/readyz?standby=true", "port": "http" }, "periodSeconds": 5 })),
            ip,
            &ports(),
        )
        .unwrap();
        assert_eq!(
            readiness,
            ProbeSpec {
                action: ProbeAction::HttpGet {
                    addr: "127.0.0.14:8080".parse().unwrap(),
                    path: "/readyz?standby=true".into(),
                },
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let liveness = ProbeSpec::parse(
            &probe(
                json!({ "httpGet": { "path": "/livez", "port": 8080 }, "periodSeconds": 10,
                "failureThreshold": 3, "initialDelaySeconds": 2, "timeoutSeconds": 0 }),
            ),
            ip,
            &ports(),
        )
        .unwrap();
        assert_eq!(liveness.target(), "http://127.0.0.14:8080/livez");
        assert_eq!(liveness.initial_delay, Duration::from_secs(2));
        assert_eq!(
            liveness.timeout,
            Duration::from_secs(1),
            "0 means the default"
        );
    }

    #[test]
    fn probe_ports_follow_host_ports_and_unsupported_probes_say_why() {
        let ip = Ipv4Addr::new(127, 0, 0, 10);
        let tcp = ProbeSpec::parse(
            &probe(json!({ "tcpSocket": { "port": "signaling" } })),
            ip,
            &ports(),
        )
        .unwrap();
        assert_eq!(
            tcp.action,
            ProbeAction::TcpSocket {
                addr: "127.0.0.10:21003".parse().unwrap()
            }
        );
        assert_eq!(tcp.period, Duration::from_secs(10));
        let get = ProbeSpec::parse(
            &probe(json!({ "httpGet": { "port": "7880" } })),
            ip,
            &ports(),
        )
        .unwrap();
        assert_eq!(get.target(), "http://127.0.0.10:21003/");
        for (bad, why) in [
            (json!({ "exec": { "command": ["true"] } }), "exec"),
            (json!({ "grpc": { "port": 1 } }), "gRPC"),
            (json!({ "httpGet": { "port": "nope" } }), "named nope"),
            (
                json!({ "httpGet": { "port": 1, "scheme": "HTTPS" } }),
                "HTTPS",
            ),
            (json!({}), "no action"),
        ] {
            let err = ProbeSpec::parse(&probe(bad), ip, &ports()).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn verdicts_change_after_thresholds_in_a_row() {
        let spec = ProbeSpec {
            action: ProbeAction::TcpSocket {
                addr: "127.0.0.1:1".parse().unwrap(),
            },
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut ready = ProbeState::readiness();
        assert!(!ready.passing());
        assert_eq!(ready.record(&spec, true), None);
        assert_eq!(ready.record(&spec, false), None, "the streak restarts");
        assert_eq!(ready.record(&spec, true), None);
        assert_eq!(ready.record(&spec, true), Some(true));
        assert_eq!(ready.record(&spec, true), None);
        assert_eq!(ready.record(&spec, false), None);
        assert_eq!(ready.record(&spec, false), None);
        assert_eq!(
            ready.record(&spec, true),
            None,
            "a success breaks the failures"
        );
        assert_eq!(ready.record(&spec, false), None);
        assert_eq!(ready.record(&spec, false), None);
        assert_eq!(ready.record(&spec, false), Some(false));
        assert!(!ready.passing());

        let mut live = ProbeState::liveness();
        assert!(live.passing());
        assert_eq!(live.record(&spec, false), None);
        assert_eq!(live.record(&spec, false), None);
        assert_eq!(live.record(&spec, false), Some(false));
    }
}
