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
    /// Human-readable lines, coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One flat JSON object per line, for log collectors: `timestamp`, `level`, `message`,
    /// `target`, `request_id` (while a request is handled), then the event's fields.
    Json,
}

/// Installs the log subscriber on stderr, filtered by `RUST_LOG` (else `default_filter`).
/// Text lines carry colour codes only when stderr is a terminal and `NO_COLOR` is unset, so
/// a file, a pipe or a container's log holds plain text. Later calls do nothing.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour_on_stderr()).try_init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).try_init(),
    };
}

/// Whether text logs may be coloured: stderr is a terminal and `NO_COLOR` is unset or empty.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The JSON line format: one flat object per event. tracing-subscriber's own JSON nests the
/// event's fields (the message among them) under `fields` and the request id under `span`,
/// which log collectors then have to unpack.
pub(crate) struct JsonLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let line = json_line(
            time::OffsetDateTime::now_utc(),
            event.metadata(),
            |visitor| event.record(visitor),
            crate::http::current_request_id(),
        );
        writeln!(writer, "{line}")
    }
}

/// One event as a JSON line: `timestamp` (RFC 3339, UTC), `level`, `message`, `target`, the
/// request id (the event's own `request_id` field, else `request_id` when given), then the
/// other fields with their JSON types.
fn json_line(
    now: time::OffsetDateTime,
    metadata: &tracing::Metadata<'_>,
    record: impl FnOnce(&mut JsonFields),
    request_id: String,
) -> String {
    let mut fields = JsonFields::default();
    record(&mut fields);
    let timestamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut line = serde_json::Map::new();
    line.insert("timestamp".into(), timestamp.into());
    line.insert("level".into(), metadata.level().as_str().into());
    line.insert(
        "message".into(),
        fields.message.take().unwrap_or_default().into(),
    );
    line.insert("target".into(), metadata.target().into());
    match fields.values.remove("request_id") {
        Some(id) => {
            line.insert("request_id".into(), id);
        }
        None if !request_id.is_empty() => {
            line.insert("request_id".into(), request_id.into());
        }
        None => {}
    }
    for (key, value) in fields.values {
        // A field may not replace the five keys above.
        line.entry(key).or_insert(value);
    }
    serde_json::Value::Object(line).to_string()
}

/// An event's fields, with their JSON types; `message` apart.
#[derive(Default)]
struct JsonFields {
    message: Option<String>,
    values: serde_json::Map<String, serde_json::Value>,
}

impl JsonFields {
    fn put(&mut self, field: &tracing::field::Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.values.insert(field.name().to_owned(), value);
        }
    }
}

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.put(field, value.to_string().into());
    }
}

/// The access log's target: one line per answered request at `info`, unless
/// `--access-log false`.
pub const ACCESS_TARGET: &str = "importops::access";

/// Writes the access line of one answered request: its method, the route's pattern (never
/// the raw path, which may hold ids), the status, the time taken in milliseconds and the
/// request id.
pub fn access_line(method: &str, route: &str, status: u16, elapsed: Duration, request_id: &str) {
    let duration_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    tracing::info!(
        target: ACCESS_TARGET,
        method,
        route,
        status,
        duration_ms,
        request_id,
        "request answered"
    );
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
            "importops_connections_shed_total",
            "Connections closed while waiting, to keep open connections under the limit"
        );
        metrics::describe_counter!(
            "importops_password_hashing_busy_total",
            "Logins answered 503 because every password-hashing slot stayed busy"
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
        metrics::describe_gauge!(
            IN_FLIGHT,
            "HTTP requests received and not answered yet (the scrape that reads it included)"
        );
        metrics::describe_gauge!(
            OPEN_CONNECTIONS,
            "Client connections open on the server's listeners (the API's and the metrics')"
        );
        process_collector().describe();
        handle
    })
}

const IN_FLIGHT: &str = "importops_http_requests_in_flight";
const OPEN_CONNECTIONS: &str = "importops_http_open_connections";

/// The gauge `name`, registered once (its handle kept in `cell`) after the recorder is
/// installed: a handle taken before would update nothing.
fn gauge(cell: &'static OnceLock<metrics::Gauge>, name: &'static str) -> &'static metrics::Gauge {
    cell.get_or_init(|| {
        metrics();
        metrics::gauge!(name)
    })
}

fn in_flight_gauge() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    gauge(&GAUGE, IN_FLIGHT)
}

fn open_connections_gauge() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    gauge(&GAUGE, OPEN_CONNECTIONS)
}

/// One request in flight, from the moment the front line receives it until this is dropped
/// (when it is answered, or when the client goes away first).
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        in_flight_gauge().increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        in_flight_gauge().decrement(1.0);
    }
}

/// One open client connection, from its accept until this is dropped (when it closes).
pub struct OpenConnection(());

impl OpenConnection {
    pub fn start() -> Self {
        open_connections_gauge().increment(1.0);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        open_connections_gauge().decrement(1.0);
    }
}

/// The collector of the standard `process_*` metrics (CPU seconds, resident and virtual
/// memory, open and maximum descriptors, threads, start time), read from the system.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process metrics afresh, just before rendering.
pub fn collect_process_metrics() {
    metrics();
    process_collector().collect();
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

/// Counts a connection closed to make room for a new one (`connections`).
pub fn connection_shed() {
    metrics::counter!("importops_connections_shed_total").increment(1);
}

/// Counts a login refused because password hashing was saturated (`hashing`).
pub fn password_hashing_busy() {
    metrics::counter!("importops_password_hashing_busy_total").increment(1);
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
