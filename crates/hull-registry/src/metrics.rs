//! Prometheus metrics, served unauthenticated at `GET /metrics` on the registry's listener in
//! the OpenMetrics text format (which Prometheus scrapes natively):
//!
//! - `hull_registry_http_requests_total{method,route,code}`: answered requests;
//! - `hull_registry_http_request_duration_seconds{method,route}`: from the request's arrival to
//!   the end of its answer's body (a blob download counts until its last byte);
//! - `hull_registry_http_received_bytes_total{route}` and
//!   `hull_registry_http_sent_bytes_total{route}`: request and response body bytes;
//! - `hull_registry_uploads_in_progress`: upload requests (`POST`/`PATCH`/`PUT` on
//!   `/blobs/uploads`) being received now. Open upload sessions are not counted: one may be
//!   continued on another replica, or never.
//!
//! `route` is the kind of endpoint (`base`, `manifest`, `blob`, `upload`, `tags`, `catalog`,
//! `referrers`, `token`, `search`, `metrics`, `other`), never a repository name, so the number
//! of series stays bounded.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::http::Method;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde::Deserialize;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `[metrics]` table of `hull serve`'s configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsConfig {
    /// Serve `/metrics` (default: yes).
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodRouteLabels {
    method: &'static str,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

fn duration_histogram() -> Histogram {
    // 5 ms to about 82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// A registry's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: prometheus_client::registry::Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<MethodRouteLabels, Histogram, fn() -> Histogram>,
    received: Family<RouteLabels, Counter>,
    sent: Family<RouteLabels, Counter>,
    uploads: Gauge<i64, std::sync::atomic::AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = prometheus_client::registry::Registry::with_prefix("hull_registry");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration =
            Family::<MethodRouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        let received = Family::<RouteLabels, Counter>::default();
        let sent = Family::<RouteLabels, Counter>::default();
        let uploads = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to the end of its answer",
            prometheus_client::registry::Unit::Seconds,
            duration.clone(),
        );
        registry.register_with_unit(
            "http_received",
            "Request body bytes received",
            prometheus_client::registry::Unit::Bytes,
            received.clone(),
        );
        registry.register_with_unit(
            "http_sent",
            "Response body bytes sent",
            prometheus_client::registry::Unit::Bytes,
            sent.clone(),
        );
        registry.register(
            "uploads_in_progress",
            "Blob upload requests being received",
            uploads.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                duration,
                received,
                sent,
                uploads,
            }),
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut s, &self.inner.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        s
    }

    /// Starts tracking one request: its body is counted as it is read, and
    /// [`Tracker::finish`] counts the answer.
    pub(crate) fn track(&self, method: &Method, route: &'static str) -> Tracker {
        let uploading =
            route == "upload" && matches!(*method, Method::POST | Method::PATCH | Method::PUT);
        if uploading {
            self.inner.uploads.inc();
        }
        Tracker {
            metrics: self.clone(),
            method: method_label(method),
            route,
            started: Instant::now(),
            uploading,
        }
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The `route` label of a path.
pub(crate) fn route_kind(path: &str) -> &'static str {
    match path {
        "/metrics" => return "metrics",
        "/token" => return "token",
        "/v1/search" => return "search",
        "/v2" | "/v2/" => return "base",
        "/v2/_catalog" => return "catalog",
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return "other";
    };
    if rest.ends_with("/tags/list") {
        return "tags";
    }
    if rest.contains("/blobs/uploads") {
        return "upload";
    }
    let head = rest.rsplit_once('/').map_or("", |(h, _)| h);
    match head.rsplit_once('/').map(|(_, k)| k) {
        Some("manifests") => "manifest",
        Some("blobs") => "blob",
        Some("referrers") => "referrers",
        _ => "other",
    }
}

/// One request being answered.
pub(crate) struct Tracker {
    metrics: Metrics,
    method: &'static str,
    route: &'static str,
    started: Instant,
    uploading: bool,
}

impl Tracker {
    /// The request body, counted as it is read.
    pub(crate) fn count_body(&self, body: Body) -> Body {
        let counter = self
            .metrics
            .inner
            .received
            .get_or_create_owned(&RouteLabels { route: self.route });
        Body::new(Counted {
            inner: body,
            counter,
            on_end: None,
        })
    }

    /// Wraps the answer's body: when it has been sent (or dropped), the request is counted.
    pub(crate) fn finish(self, status: u16, body: Body) -> Body {
        let m = &self.metrics.inner;
        let counter = m
            .sent
            .get_or_create_owned(&RouteLabels { route: self.route });
        Body::new(Counted {
            inner: body,
            counter,
            on_end: Some(Box::new(move || self.record(status))),
        })
    }

    fn record(&self, status: u16) {
        let m = &self.metrics.inner;
        m.requests
            .get_or_create(&RequestLabels {
                method: self.method,
                route: self.route,
                code: status,
            })
            .inc();
        m.duration
            .get_or_create(&MethodRouteLabels {
                method: self.method,
                route: self.route,
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if self.uploading {
            self.metrics.inner.uploads.dec();
            self.uploading = false;
        }
    }
}

/// A body whose data frames add to a counter; `on_end` runs once it is dropped.
struct Counted {
    inner: Body,
    counter: Counter<u64, AtomicU64>,
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.inc_by(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_kinds_not_names() {
        for (path, kind) in [
            ("/v2/", "base"),
            ("/v2/_catalog", "catalog"),
            ("/v2/a/b/tags/list", "tags"),
            ("/v2/a/manifests/latest", "manifest"),
            ("/v2/a/blobs/sha256:ab", "blob"),
            ("/v2/a/blobs/uploads/", "upload"),
            ("/v2/a/blobs/uploads/abc", "upload"),
            ("/v2/a/referrers/sha256:ab", "referrers"),
            ("/token", "token"),
            ("/v1/search", "search"),
            ("/metrics", "metrics"),
            ("/x", "other"),
            ("/v2/a", "other"),
        ] {
            assert_eq!(route_kind(path), kind, "{path}");
        }
    }

    #[test]
    fn counters_render() {
        let m = Metrics::new();
        let t = m.track(&Method::PATCH, "upload");
        assert!(m.render().contains("hull_registry_uploads_in_progress 1"));
        drop(t.finish(202, Body::empty()));
        let text = m.render();
        assert!(
            text.contains("hull_registry_uploads_in_progress 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "hull_registry_http_requests_total{method=\"PATCH\",route=\"upload\",code=\"202\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
