//! `/metrics`: Prometheus exposition that a parser reads, counters that move with requests,
//! labels without repository names, and the switch that turns it off.

use hull_registry::{BasicAuth, Htpasswd, MetricsConfig, Registry, RegistryConfig};

use crate::support::*;

/// Scrapes `/metrics` and parses it; returns samples by name and labels.
fn scrape(base: &str) -> (String, Vec<prometheus_parse::Sample>) {
    let resp = client().get(format!("{base}/metrics")).send().unwrap();
    assert_eq!(resp.status(), 200);
    let ct = header(&resp, "content-type").unwrap();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = resp.text().unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    (text, scrape.samples)
}

fn value(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn counters_move_with_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let base = server.url();
    let (_, before) = scrape(&base);
    let manifest_gets = |s: &[prometheus_parse::Sample]| {
        value(
            s,
            "hull_registry_http_requests_total",
            &[("method", "GET"), ("route", "manifest"), ("code", "200")],
        )
    };
    assert_eq!(manifest_gets(&before), 0.0);

    let m = push_image(&base, "metrics/secret-name", "v1", "metrics");
    for _ in 0..3 {
        let resp = client()
            .get(format!("{base}/v2/metrics/secret-name/manifests/v1"))
            .header("accept", hull_oci::media_type::OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(resp.bytes().unwrap().len(), m.len());
    }
    let resp = client()
        .get(format!("{base}/v2/metrics/secret-name/manifests/missing"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);

    let (text, after) = scrape(&base);
    assert_eq!(manifest_gets(&after), 3.0);
    assert_eq!(
        value(
            &after,
            "hull_registry_http_requests_total",
            &[("method", "GET"), ("route", "manifest"), ("code", "404")],
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "hull_registry_http_requests_total",
            &[("method", "POST"), ("route", "upload"), ("code", "201")],
        ),
        2.0,
        "two monolithic blob uploads"
    );
    let sent = value(
        &after,
        "hull_registry_http_sent_bytes_total",
        &[("route", "manifest")],
    );
    assert!(sent >= (3 * m.len()) as f64, "sent {sent}");
    let received = value(
        &after,
        "hull_registry_http_received_bytes_total",
        &[("route", "manifest")],
    );
    assert_eq!(received, m.len() as f64, "the manifest PUT body");
    assert_eq!(value(&after, "hull_registry_uploads_in_progress", &[]), 0.0);
    assert!(
        text.contains("hull_registry_http_request_duration_seconds_bucket"),
        "{text}"
    );
    let count = value(
        &after,
        "hull_registry_http_request_duration_seconds_count",
        &[("method", "GET"), ("route", "manifest")],
    );
    assert_eq!(count, 4.0);
    assert!(
        !text.contains("secret-name"),
        "a repository name in the metrics"
    );
}

#[test]
fn metrics_skip_auth_and_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = Htpasswd::parse(&htpasswd_text(&[("alice", "pw")])).unwrap();
    let guarded = TestServer::start_full(
        dir.path(),
        RegistryConfig::default(),
        Some(BasicAuth::new("r", htpasswd)),
    );
    assert_eq!(
        client()
            .get(format!("{}/v2/", guarded.url()))
            .send()
            .unwrap()
            .status(),
        401
    );
    let (_, samples) = scrape(&guarded.url());
    assert_eq!(
        value(
            &samples,
            "hull_registry_http_requests_total",
            &[("route", "base"), ("code", "401")],
        ),
        1.0
    );
    drop(guarded);

    let off = TestServer::start_custom(dir.path(), |storage| async move {
        Registry::builder(storage)
            .metrics(MetricsConfig { enabled: false })
            .build()
    });
    let resp = client()
        .get(format!("{}/metrics", off.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 404);
}
