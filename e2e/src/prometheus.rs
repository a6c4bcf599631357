//! A real Prometheus server (Debian's `prometheus`) on loopback, scraping the operator and
//! media nodes the pod runner runs, so that the dashboards' queries are run against what the
//! binaries really export.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::process::{self, Supervised};
use crate::{http, wait};

/// The environment variable naming the `prometheus` binary (default: `prometheus` on `PATH`).
pub const PROMETHEUS_ENV: &str = "RUCHE_PROMETHEUS";
/// How often targets are scraped: short, so that rates have points within seconds.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(2);

/// One scrape target: an address, and the labels a Kubernetes service discovery would give.
#[derive(Clone, Debug)]
pub struct Target {
    /// `ip:port`.
    pub address: SocketAddr,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

impl Target {
    /// A target at `ip:port` for pod `namespace/pod`.
    pub fn new(ip: Ipv4Addr, port: u16, namespace: &str, pod: &str) -> Self {
        Self {
            address: SocketAddr::from((ip, port)),
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        }
    }
}

/// A scrape job: its targets, and a bearer token file if they need one.
#[derive(Clone, Debug)]
pub struct Job {
    /// The job's name (the `job` label).
    pub name: String,
    /// What it scrapes.
    pub targets: Vec<Target>,
    /// A file holding the bearer token the targets want (the media nodes' admin token).
    pub token_file: Option<PathBuf>,
}

/// The configuration file of `jobs`.
pub fn config(jobs: &[Job]) -> String {
    let mut out = format!(
        "global:\n  scrape_interval: {0}s\n  scrape_timeout: {0}s\n  evaluation_interval: {0}s\nscrape_configs:\n",
        SCRAPE_INTERVAL.as_secs()
    );
    for job in jobs {
        let _ = writeln!(out, "  - job_name: {}", job.name);
        if let Some(file) = &job.token_file {
            let _ = writeln!(
                out,
                "    authorization:\n      credentials_file: {}",
                file.display()
            );
        }
        out.push_str("    static_configs:\n");
        for t in &job.targets {
            let _ = writeln!(
                out,
                "      - targets: ['{}']\n        labels: {{namespace: '{}', pod: '{}'}}",
                t.address, t.namespace, t.pod
            );
        }
    }
    out
}

/// A running Prometheus server; killed when dropped.
pub struct Prometheus {
    /// Where its HTTP API listens.
    pub address: SocketAddr,
    /// Its log.
    pub log: PathBuf,
    process: Supervised,
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port with `jobs`, its files in `dir`, and waits
    /// until it is ready.
    pub async fn start(dir: &Path, jobs: &[Job]) -> Result<Self> {
        let program = std::env::var_os(PROMETHEUS_ENV)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from("prometheus"), PathBuf::from);
        std::fs::create_dir_all(dir.join("data"))
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config(jobs))
            .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
        let port = process::free_port()?;
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut command = tokio::process::Command::new(&program);
        command
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn");
        let log = dir.join("prometheus.log");
        let process = Supervised::spawn(command, &log).map_err(|e| {
            Error::Setup(format!(
                "{e} (install Debian's prometheus, or set {PROMETHEUS_ENV})"
            ))
        })?;
        let server = Self {
            address,
            log,
            process,
        };
        wait::until(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async {
                match http::get(address, "/-/ready", Duration::from_secs(2)).await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("/-/ready: {}", r.status)),
                    Err(e) => Err(format!(
                        "{e}; log: {}",
                        process::tail(&server.log, 5).replace('\n', " | ")
                    )),
                }
            },
        )
        .await?;
        Ok(server)
    }

    /// Runs an instant query; returns the result vector (each element's `metric` and `value`).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let r = http::get(self.address, &path, Duration::from_secs(10)).await?;
        let body: Value = serde_json::from_str(&r.body).map_err(|e| {
            Error::Setup(format!("{expr}: the answer is not JSON ({e}): {}", r.body))
        })?;
        if body["status"] != "success" {
            return Err(Error::Setup(format!("{expr}: {}", r.body.trim())));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Every target's `up`, as `job pod = value`.
    pub async fn targets_up(&self) -> Result<Vec<(String, f64)>> {
        let mut out = Vec::new();
        for sample in self.query("up").await? {
            let name = format!(
                "{} {}/{}",
                sample["metric"]["job"].as_str().unwrap_or_default(),
                sample["metric"]["namespace"].as_str().unwrap_or_default(),
                sample["metric"]["pod"].as_str().unwrap_or_default()
            );
            out.push((name, value_of(&sample)));
        }
        Ok(out)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.process.kill();
    }
}

/// A sample's value (NaN when it is not a number).
pub fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Percent-encodes a query for a URL's query string.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode("sum by (le) (rate(x{a=~\".*\"}[1m]))"),
            "sum%20by%20%28le%29%20%28rate%28x%7Ba%3D~%22.%2A%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn the_config_names_each_pod_and_the_token_file() {
        let text = config(&[Job {
            name: "ruche-media-node".into(),
            targets: vec![Target::new(
                Ipv4Addr::new(127, 0, 0, 12),
                7881,
                "visio",
                "n-0",
            )],
            token_file: Some(PathBuf::from("/tmp/t")),
        }]);
        assert!(text.contains("credentials_file: /tmp/t"), "{text}");
        assert!(text.contains("- targets: ['127.0.0.12:7881']"), "{text}");
        assert!(
            text.contains("labels: {namespace: 'visio', pod: 'n-0'}"),
            "{text}"
        );
    }
}
