//! The time the API server takes to answer the operator: a layer of the kube client's stack
//! that times every request but watches (which stay open by design) and records it by verb,
//! resource and status code (`ruche_operator_api_request_duration_seconds`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::{Layer, Service};

use crate::metrics::{ApiRequestLabel, Metrics};

/// The layer: wraps the client's service in an [`ApiLatencyService`].
#[derive(Clone)]
pub struct ApiLatency {
    metrics: Arc<Metrics>,
}

impl ApiLatency {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ApiLatency {
    type Service = ApiLatencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiLatencyService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The client's service, timing each request.
#[derive(Clone)]
pub struct ApiLatencyService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for ApiLatencyService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let label = labelled(request.method().as_str(), request.uri());
        let future = self.inner.call(request);
        let Some(mut label) = label else {
            return Box::pin(future);
        };
        let metrics = self.metrics.clone();
        let started = Instant::now();
        Box::pin(async move {
            let answer = future.await;
            label.code = match &answer {
                Ok(response) => response.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics.api_request(&label, started.elapsed());
            answer
        })
    }
}

/// The labels of a request (its code left blank), or `None` for a watch.
fn labelled(method: &str, uri: &http::Uri) -> Option<ApiRequestLabel> {
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    if watch {
        return None;
    }
    Some(ApiRequestLabel {
        verb: method.to_string(),
        resource: resource_of(uri.path()),
        code: String::new(),
    })
}

/// The resource a request path names, with its subresource: `/apis/ruche.dev/v1alpha1/
/// namespaces/visio/rooms/r1/status` is `rooms/status`. Never a name or a namespace, so
/// that the label stays a handful of values.
pub fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return "other".to_string(),
    };
    let rest = match rest {
        ["namespaces", _namespace, inner @ ..] if !inner.is_empty() => inner,
        other => other,
    };
    match rest {
        [] => "discovery".to_string(),
        [resource] | [resource, _] => (*resource).to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_resource_and_subresource_only() {
        for (path, want) in [
            (
                "/apis/ruche.dev/v1alpha1/namespaces/visio/rooms/r1/status",
                "rooms/status",
            ),
            ("/apis/ruche.dev/v1alpha1/namespaces/visio/rooms", "rooms"),
            ("/apis/ruche.dev/v1alpha1/rooms", "rooms"),
            (
                "/apis/ruche.dev/v1alpha1/namespaces/visio/mediafleets/f/scale",
                "mediafleets/scale",
            ),
            ("/api/v1/namespaces/visio/pods/p", "pods"),
            ("/api/v1/namespaces/visio", "namespaces"),
            ("/api/v1/nodes", "nodes"),
            (
                "/apis/coordination.k8s.io/v1/namespaces/ruche/leases/ruche",
                "leases",
            ),
            ("/api/v1", "discovery"),
            ("/version", "other"),
        ] {
            assert_eq!(resource_of(path), want, "{path}");
        }
    }

    #[test]
    fn watches_are_not_timed() {
        let uri: http::Uri = "/apis/ruche.dev/v1alpha1/rooms?watch=true&resourceVersion=5"
            .parse()
            .unwrap();
        assert!(labelled("GET", &uri).is_none());
        let uri: http::Uri = "/apis/ruche.dev/v1alpha1/rooms?limit=500".parse().unwrap();
        let label = labelled("GET", &uri).unwrap();
        assert_eq!(
            (label.verb.as_str(), label.resource.as_str()),
            ("GET", "rooms")
        );
    }

    #[tokio::test]
    async fn each_answer_is_recorded_with_its_code() {
        let metrics = Arc::new(Metrics::new());
        let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<()>>();
        let mut service = ApiLatency::new(metrics.clone()).layer(mock);
        let answer = tokio::spawn(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx))
                .await
                .unwrap();
            service
                .call(
                    Request::patch("/apis/ruche.dev/v1alpha1/namespaces/v/rooms/r/status")
                        .body(())
                        .unwrap(),
                )
                .await
        });
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_response(Response::builder().status(409).body(()).unwrap());
        answer.await.unwrap().unwrap();
        let text = metrics.encode();
        assert!(
            text.contains(
                "ruche_operator_api_request_duration_seconds_count{verb=\"PATCH\",resource=\"rooms/status\",code=\"409\"} 1"
            ),
            "{text}"
        );
    }
}
