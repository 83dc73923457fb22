//! Logs and metrics. Logs go to stderr as human lines or JSON lines; every line written while
//! a request is handled carries its request id. Metrics are kept by the `metrics` crate's
//! recorder and rendered in Prometheus' text format at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use clap::ValueEnum;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the log subscriber, filtered by `RUST_LOG` (else `default_filter`). Later calls
/// do nothing.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Latency buckets in seconds: from 50 µs (a cached answer) to 10 s (a timed-out database).
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// How often queued histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_millis(500);

/// The process-wide metrics recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("importops_http_request_duration_seconds".into()),
                LATENCY_BUCKETS,
            )
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Histogram samples queue up until upkeep folds them into the buckets: without it,
        // every sample since the last scrape stays in memory.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        // Another recorder may exist already (a test harness); then ours only renders.
        let _ = metrics::set_global_recorder(recorder);
        metrics::gauge!("importops_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        metrics::describe_counter!(
            "importops_http_requests_total",
            "HTTP requests answered, by route pattern, method and status"
        );
        metrics::describe_histogram!(
            "importops_http_request_duration_seconds",
            metrics::Unit::Seconds,
            "Time to answer an HTTP request, by route pattern and method"
        );
        metrics::describe_counter!(
            "importops_cache_lookups_total",
            "Cache lookups on the request path, by kind and result (hit or miss)"
        );
        metrics::describe_counter!(
            "importops_rate_limit_rejections_total",
            "Requests answered 429 by the rate limiter, by route pattern"
        );
        metrics::describe_gauge!(
            "importops_db_pool_connections",
            "Database pool connections, by state (idle or in use)"
        );
        metrics::describe_gauge!("importops_build_info", "Always 1; the version as a label");
        handle
    })
}

/// Counts one answered request. Methods outside HTTP's standard ones are counted as `other`,
/// so that clients cannot add series without end (routes are the router's patterns).
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    let method: &'static str = KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other");
    // The handles of each (route, method, status) are looked up in the registry once per
    // thread, then kept: recording is then an atomic update. The key is the address of the
    // route text the caller holds (the router's own pattern, the same on every request), checked
    // against the label on a hit in case a dropped router's address was reused.
    let key = (
        route.as_ptr() as usize,
        route.len(),
        method.as_ptr() as usize,
        status,
    );
    HANDLES.with(|handles| {
        let mut handles = handles.borrow_mut();
        let handle = match handles.get(&key) {
            Some(handle) if handle.route == route => handle,
            _ => {
                let route = interned(route);
                let status = status_label(status);
                let handle = Handle {
                    route,
                    duration: metrics::histogram!(
                        "importops_http_request_duration_seconds",
                        "route" => route,
                        "method" => method
                    ),
                    count: metrics::counter!(
                        "importops_http_requests_total",
                        "route" => route,
                        "method" => method,
                        "status" => status
                    ),
                };
                handles.insert(key, handle);
                &handles[&key]
            }
        };
        handle.duration.record(elapsed.as_secs_f64());
        handle.count.increment(1);
    });
}

/// The metric handles of one (route, method, status).
struct Handle {
    route: &'static str,
    duration: metrics::Histogram,
    count: metrics::Counter,
}

/// (route text's address and length, method, status) -> its handles.
type Handles = std::collections::HashMap<(usize, usize, usize, u16), Handle>;

thread_local! {
    static HANDLES: std::cell::RefCell<Handles> = std::cell::RefCell::new(Handles::new());
}

/// A route pattern as a `'static` label without allocating per request: the patterns are the
/// router's (and `<unmatched>`), a bounded set, each kept once.
fn interned(route: &str) -> &'static str {
    static ROUTES: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());
    if let Some(found) = ROUTES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|r| **r == route)
    {
        return found;
    }
    let mut routes = ROUTES.write().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = routes.iter().find(|r| **r == route) {
        return found;
    }
    let leaked: &'static str = Box::leak(route.to_owned().into_boxed_str());
    routes.push(leaked);
    leaked
}

/// The status as a `'static` label: the codes HTTP defines are kept once each.
fn status_label(status: u16) -> &'static str {
    static LABELS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (100..600u16)
            .map(|code| &*Box::leak(code.to_string().into_boxed_str()))
            .collect()
    });
    usize::from(status)
        .checked_sub(100)
        .and_then(|i| labels.get(i))
        .copied()
        .unwrap_or("other")
}

/// Counts a cache lookup on the request path. The six counters are registered once and kept,
/// so a lookup costs an atomic add, not a registry search.
pub fn cache_lookup(kind: &'static str, hit: bool) {
    const KINDS: [&str; 3] = ["session", "permission", "latest"];
    static HANDLES: OnceLock<Vec<metrics::Counter>> = OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        metrics();
        KINDS
            .iter()
            .flat_map(|kind| {
                ["hit", "miss"].map(|result| {
                    metrics::counter!("importops_cache_lookups_total", "kind" => *kind, "result" => result)
                })
            })
            .collect()
    });
    if let Some(i) = KINDS.iter().position(|k| *k == kind) {
        handles[i * 2 + usize::from(!hit)].increment(1);
    }
}

/// Counts a request refused by the rate limiter.
pub fn rate_limited(route: &str) {
    metrics::counter!("importops_rate_limit_rejections_total", "route" => route.to_owned())
        .increment(1);
}

/// Sets the pool gauges, just before rendering.
pub fn pool_connections(size: u32, idle: usize) {
    let idle = idle as f64;
    metrics::gauge!("importops_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("importops_db_pool_connections", "state" => "in_use")
        .set((f64::from(size) - idle).max(0.0));
}
