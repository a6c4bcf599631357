//! The API server's own count of the requests it served (`apiserver_request_total` on its
//! `/metrics`), read before and after a phase of a run, so that a bench says how many writes
//! each placement cost as the API server saw them, not as the operator thinks it made them.

use std::collections::BTreeMap;
use std::fmt;

use kube::Client;

use crate::error::{Error, Result};

/// What a request did: its verb and the resource (with subresource) it was on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKind {
    /// `POST`, `PATCH`, `PUT`, `DELETE`, `GET`, `LIST`, `WATCH`...
    pub verb: String,
    /// `rooms`, `events`, `medianodes`...
    pub resource: String,
    /// `status`, or empty.
    pub subresource: String,
}

impl RequestKind {
    /// Whether the request writes (creates, changes or deletes something).
    pub fn is_write(&self) -> bool {
        // Server-side apply is counted under its own verb, APPLY.
        matches!(
            self.verb.as_str(),
            "POST" | "PUT" | "PATCH" | "APPLY" | "DELETE" | "DELETECOLLECTION"
        )
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subresource.is_empty() {
            write!(f, "{} {}", self.verb, self.resource)
        } else {
            write!(f, "{} {}/{}", self.verb, self.resource, self.subresource)
        }
    }
}

/// Requests served, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts(pub BTreeMap<RequestKind, u64>);

impl RequestCounts {
    /// Reads the counters from the API server the client talks to (needs `get` on the
    /// `/metrics` non-resource URL, which a cluster administrator has).
    pub async fn read(client: &Client) -> Result<Self> {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .map_err(|e| Error::Setup(format!("a /metrics request: {e}")))?;
        let text = client.request_text(request).await?;
        Ok(Self::parse(&text))
    }

    /// Sums `apiserver_request_total` over codes and versions, by verb and resource.
    pub fn parse(text: &str) -> Self {
        let mut counts = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once('}') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let kind = RequestKind {
                verb: label("verb"),
                resource: label("resource"),
                subresource: label("subresource"),
            };
            *counts.entry(kind).or_insert(0) += value as u64;
        }
        Self(counts)
    }

    /// What was served between `before` and `self`.
    #[must_use]
    pub fn since(&self, before: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.saturating_sub(before.0.get(k).copied().unwrap_or(0)),
                    )
                })
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    /// Writes of the kinds `of` selects.
    pub fn writes(&self, of: impl Fn(&RequestKind) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.is_write() && of(k))
            .map(|(_, v)| v)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_verb_and_resource_and_diffed() {
        let before = RequestCounts::parse(
            "# TYPE apiserver_request_total counter\n\
             apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"rooms\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1alpha1\"} 10\n\
             apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"rooms\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 4\n",
        );
        let after = RequestCounts::parse(
            "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"rooms\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1alpha1\"} 30\n\
             apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"rooms\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 20\n\
             apiserver_request_total{code=\"409\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"rooms\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 4\n\
             apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"events.k8s.io\",resource=\"events\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 20\n\
             apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"medianodes\",scope=\"resource\",subresource=\"status\",verb=\"APPLY\",version=\"v1alpha1\"} 2\n\
             apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"ruche.dev\",resource=\"rooms\",scope=\"namespace\",subresource=\"\",verb=\"WATCH\",version=\"v1alpha1\"} 3\n",
        );
        let d = after.since(&before);
        let kind = |verb: &str, resource: &str, sub: &str| RequestKind {
            verb: verb.into(),
            resource: resource.into(),
            subresource: sub.into(),
        };
        assert_eq!(d.0.get(&kind("POST", "rooms", "")), Some(&20));
        assert_eq!(d.0.get(&kind("PATCH", "rooms", "status")), Some(&20));
        assert_eq!(
            d.writes(|k| k.resource != "rooms" || k.subresource == "status"),
            42,
            "server-side applies are writes"
        );
        assert_eq!(d.writes(|_| true), 62, "watches are not writes");
        assert_eq!(
            kind("PATCH", "rooms", "status").to_string(),
            "PATCH rooms/status"
        );
    }
}
