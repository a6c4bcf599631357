//! The status a kubelet writes for a pod, from what the runner knows of its one container:
//! running (ready or not), waiting to restart, or terminated.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// The current time as the API writes it.
fn now() -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", Timestamp::now())
        .unwrap_or_default()
}

#[derive(Clone, Debug)]
struct Terminated {
    exit_code: i32,
    started: String,
    finished: String,
}

impl Terminated {
    fn json(&self) -> Value {
        json!({ "terminated": {
            "exitCode": self.exit_code,
            "reason": if self.exit_code == 0 { "Completed" } else { "Error" },
            "startedAt": self.started,
            "finishedAt": self.finished,
        } })
    }
}

#[derive(Clone, Debug)]
enum State {
    Running { since: String },
    Waiting { reason: String, message: String },
    Terminated(Terminated),
}

/// The status the runner wants a pod to have.
#[derive(Clone, Debug)]
pub struct Desired {
    ip: Ipv4Addr,
    container: String,
    image: String,
    /// When the pod started (its `startTime`).
    started: String,
    state: State,
    ready: bool,
    /// When readiness (ContainersReady, Ready) last changed.
    ready_changed: String,
    restart_count: u32,
    last_terminated: Option<Terminated>,
}

impl Desired {
    /// A pod whose container runs and is ready.
    pub fn running(ip: Ipv4Addr, container: &str, image: &str) -> Self {
        let t = now();
        Self {
            ip,
            container: container.to_string(),
            image: image.to_string(),
            started: t.clone(),
            state: State::Running { since: t.clone() },
            ready: true,
            ready_changed: t,
            restart_count: 0,
            last_terminated: None,
        }
    }

    /// A pod whose container runs but is not ready yet (its readiness probe has not passed).
    pub fn starting(ip: Ipv4Addr, container: &str, image: &str) -> Self {
        Self {
            ready: false,
            ..Self::running(ip, container, image)
        }
    }

    /// The same pod, ready or not.
    #[must_use]
    pub fn with_ready(mut self, ready: bool) -> Self {
        if self.ready != ready {
            self.ready = ready;
            self.ready_changed = now();
        }
        self
    }

    fn running_since(&self) -> String {
        match &self.state {
            State::Running { since } => since.clone(),
            State::Terminated(t) => t.started.clone(),
            State::Waiting { .. } => self.started.clone(),
        }
    }

    /// The same pod once its container exited with `code`, for good (restart policy Never,
    /// or OnFailure and code 0).
    #[must_use]
    pub fn terminated(mut self, code: i32) -> Self {
        let finished = now();
        self.state = State::Terminated(Terminated {
            exit_code: code,
            started: self.running_since(),
            finished: finished.clone(),
        });
        if self.ready {
            self.ready = false;
            self.ready_changed = finished;
        }
        self
    }

    /// The same pod once its container exited with `code`, to be restarted after `delay`
    /// (CrashLoopBackOff): the pod stays Running, not ready.
    #[must_use]
    pub fn backing_off(mut self, code: i32, delay: Duration) -> Self {
        let finished = now();
        self.last_terminated = Some(Terminated {
            exit_code: code,
            started: self.running_since(),
            finished: finished.clone(),
        });
        self.state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off {}s restarting failed container={}",
                delay.as_secs(),
                self.container
            ),
        };
        if self.ready {
            self.ready = false;
            self.ready_changed = finished;
        }
        self
    }

    /// The same pod once its container was started again: one more restart, not ready yet.
    #[must_use]
    pub fn restarted(mut self) -> Self {
        self.restart_count += 1;
        self.state = State::Running { since: now() };
        self.with_ready(false)
    }

    /// Whether the container runs.
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// Whether the pod is reported ready.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// How many times the container was restarted.
    pub fn restart_count(&self) -> u32 {
        self.restart_count
    }

    /// The pod's phase: Running while its container runs or waits to restart, else
    /// Succeeded (exit code 0) or Failed.
    pub fn phase(&self) -> &'static str {
        match &self.state {
            State::Running { .. } | State::Waiting { .. } => "Running",
            State::Terminated(t) if t.exit_code == 0 => "Succeeded",
            State::Terminated(_) => "Failed",
        }
    }

    /// The `status` to write.
    pub fn status(&self) -> Value {
        let ip = self.ip.to_string();
        let t = &self.started;
        let condition = |type_: &str, ok: bool, reason: &str, message: &str| {
            let at = if type_ == "ContainersReady" || type_ == "Ready" {
                &self.ready_changed
            } else {
                t
            };
            let mut c = json!({ "type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": at });
            if !reason.is_empty() {
                c["reason"] = json!(reason);
            }
            if !message.is_empty() {
                c["message"] = json!(message);
            }
            c
        };
        let (reason, message) = match (&self.state, self.ready) {
            (_, true) => ("", String::new()),
            (State::Terminated(t), false) if t.exit_code == 0 => ("PodCompleted", String::new()),
            (State::Terminated(_), false) => ("ContainersNotReady", String::new()),
            (_, false) => (
                "ContainersNotReady",
                format!("containers with unready status: [{}]", self.container),
            ),
        };
        let state = match &self.state {
            State::Running { since } => json!({ "running": { "startedAt": since } }),
            State::Waiting { reason, message } => {
                json!({ "waiting": { "reason": reason, "message": message } })
            }
            State::Terminated(t) => t.json(),
        };
        let last_state = self
            .last_terminated
            .as_ref()
            .map_or_else(|| json!({}), Terminated::json);
        json!({
            "phase": self.phase(),
            "hostIP": ip,
            "hostIPs": [{ "ip": ip }],
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "startTime": t,
            "conditions": [
                condition("PodScheduled", true, "", ""),
                condition("Initialized", true, "", ""),
                condition("ContainersReady", self.ready, reason, &message),
                condition("Ready", self.ready, reason, &message),
            ],
            "containerStatuses": [{
                "name": self.container,
                "image": self.image,
                "imageID": "",
                "ready": self.ready,
                "started": self.is_running(),
                "restartCount": self.restart_count,
                "state": state,
                "lastState": last_state,
            }],
        })
    }

    /// Whether `pod`'s status says what this one does (phase, addresses, readiness,
    /// scheduling, restarts).
    pub fn holds(&self, pod: &Pod) -> bool {
        let Some(s) = &pod.status else {
            return false;
        };
        let ip = self.ip.to_string();
        let condition = |type_: &str| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == type_)
                .map(|c| c.status.as_str())
        };
        let want = if self.ready { "True" } else { "False" };
        let restarts = i32::try_from(self.restart_count).unwrap_or(i32::MAX);
        s.phase.as_deref() == Some(self.phase())
            && s.pod_ip.as_deref() == Some(ip.as_str())
            && s.host_ip.as_deref() == Some(ip.as_str())
            && condition("PodScheduled") == Some("True")
            && condition("Ready") == Some(want)
            && s.container_statuses.iter().flatten().any(|c| {
                c.name == self.container && c.ready == self.ready && c.restart_count == restarts
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn as_pod(d: &Desired) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "status": d.status() }))
            .unwrap()
    }

    fn condition(pod: &Pod, type_: &str) -> (String, Option<String>) {
        let c = pod
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn status_round_trips_through_the_pod_type() {
        let d = Desired::running(Ipv4Addr::new(127, 0, 0, 11), "media-node", "img");
        let pod = as_pod(&d);
        assert!(d.holds(&pod));
        let mut overwritten = pod.clone();
        if let Some(c) = overwritten
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "PodScheduled"))
        {
            c.status = "False".into();
        }
        assert!(!d.holds(&overwritten), "an Unschedulable mark is noticed");
        let done = d.terminated(137);
        let pod = as_pod(&done);
        assert!(done.holds(&pod));
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Failed"));
        let completed = Desired::running(Ipv4Addr::new(127, 0, 0, 11), "c", "i").terminated(0);
        let pod = as_pod(&completed);
        assert_eq!(
            condition(&pod, "Ready"),
            ("False".into(), Some("PodCompleted".into()))
        );
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn readiness_follows_the_probe_and_restarts_are_counted() {
        let ip = Ipv4Addr::new(127, 0, 0, 14);
        let starting = Desired::starting(ip, "operator", "registry.example/operator:0.1.0");
        let pod = as_pod(&starting);
        assert!(starting.holds(&pod));
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Running")
        );
        assert_eq!(
            condition(&pod, "Ready"),
            ("False".into(), Some("ContainersNotReady".into()))
        );
        assert_eq!(condition(&pod, "ContainersReady").0, "False");
        assert_eq!(condition(&pod, "PodScheduled").0, "True");
        assert_eq!(condition(&pod, "Initialized").0, "True");
        let c = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert!(!c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.restart_count, 0);
        assert!(c.state.as_ref().unwrap().running.is_some());

        let ready = starting.with_ready(true);
        assert!(
            !ready.holds(&pod),
            "a readiness change is a change to write"
        );
        let pod = as_pod(&ready);
        assert!(ready.holds(&pod));
        assert_eq!(condition(&pod, "Ready"), ("True".into(), None));
        assert!(
            pod.status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()[0]
                .ready
        );

        let waiting = ready.backing_off(1, Duration::from_secs(10));
        let pod = as_pod(&waiting);
        assert!(waiting.holds(&pod));
        assert!(!waiting.is_running());
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Running")
        );
        let c = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(c.started, Some(false));
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );

        let again = waiting.restarted();
        assert!(!again.holds(&pod), "the restart count changed");
        let pod = as_pod(&again);
        assert!(again.holds(&pod));
        let c = &pod
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0];
        assert_eq!(c.restart_count, 1);
        assert!(!c.ready);
        assert!(c.state.as_ref().unwrap().running.is_some());
        assert!(c.last_state.as_ref().unwrap().terminated.is_some());
    }
}
