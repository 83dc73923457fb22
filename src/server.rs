//! Running the HTTP server on a listener the caller bound, until a shutdown future resolves.
//!
//! The accept loop is our own (over hyper) rather than `axum::serve`, for two guarantees on
//! shutdown: a request that reached an open connection before the signal is still answered,
//! and the drain is bounded, even with a client that never finishes its request. It also
//! bounds what a client can hold: the time to send headers and body (`Bounds`), the number of
//! header fields (`limits`), and the connections open at once (`connections`).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::connections::Connections;
use crate::http::deadline::DeadlineBody;
use crate::http::{AppState, router};

/// A client must send its request headers within this time; it also closes a keep-alive
/// connection left idle that long (hyper counts the wait for the next request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// After the signal, requests already on their way to open connections are read in this time.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// The longest the server waits for requests in flight before it exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(8);

/// What a client may hold of the server: time and connections.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Shared by the listeners that serve the same process's descriptors.
    pub connections: Arc<Connections>,
    /// `uploadImportFile`'s body limit (`http::limits::upload_body_limit`).
    pub upload_body_limit: usize,
}

impl Bounds {
    pub fn from_settings(settings: &Settings) -> Self {
        Bounds {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: Duration::from_secs(settings.body_read_timeout),
            connections: Connections::new(crate::connections::limit(settings.max_connections)),
            upload_body_limit: crate::http::limits::upload_body_limit(settings.import_max_bytes),
        }
    }
}

/// Serves the API until `shutdown` resolves (see `serve`).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let streams = state.clone();
    let shutdown = async move {
        shutdown.await;
        // Event streams and WebSockets end now, well within the drain bound.
        streams.close_streams();
    };
    serve(listener, router(state), bounds, shutdown).await
}

/// Serves `app` until `shutdown` resolves: then stops accepting, answers what it has received,
/// and returns within `SHUTDOWN_GRACE + DRAIN_LIMIT`. The API and the metrics listener both
/// run here, with the same timeouts.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout)
        // Past hyper's count its 431 has no body: ours (limits::check) decides below it.
        .max_headers(crate::http::limits::PARSED_HEADER_FIELDS)
        .keep_alive(true);
    // Told to each connection after the grace; the drain waits until every connection's task
    // has dropped its `_live` sender. (hyper-util's `GracefulShutdown` does not take a
    // connection that can be upgraded to a WebSocket.)
    let (drain, draining) = tokio::sync::watch::channel(false);
    let (live, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // At the limit the connection waiting longest makes room; if all are busy, this one
        // is closed (dropped) at once.
        let Some(registration) = bounds.connections.open() else {
            tracing::warn!(%peer, "every connection is busy: closing a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let registration = Arc::new(registration);
        let slot = crate::connections::ConnectionSlot(Arc::clone(&registration));
        let activity = registration.activity();
        let body_read_timeout = bounds.body_read_timeout;
        let upload_limit = bounds.upload_body_limit;
        // The peer address feeds the rate limiter's per-client counters.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(slot.clone());
            let activity = activity.clone();
            let request =
                request.map(|body| DeadlineBody::new(body, body_read_timeout, activity.clone()));
            let app = app.clone();
            async move {
                let response = crate::http::limits::serve(request, app, upload_limit).await;
                activity.waiting();
                response
            }
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let open = crate::telemetry::OpenConnection::start();
        let mut draining = draining.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let _open = open;
            let _live = live;
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = registration.shed() => {
                    tracing::debug!(%peer, "closed a waiting connection to make room");
                    return;
                }
                _ = async { draining.wait_for(|d| *d).await.map(drop) } => {
                    // Answers the request in progress, if any, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }

    // New connections are refused from here on.
    drop(listener);
    tokio::time::sleep(SHUTDOWN_GRACE).await;
    let _ = drain.send(true);
    drop(live);
    if tokio::time::timeout(DRAIN_LIMIT, all_done.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain limit: exiting anyway");
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
