//! Running the HTTP server on a listener the caller bound, until a shutdown future resolves.
//!
//! The accept loop is our own (over hyper) rather than `axum::serve`, for two guarantees on
//! shutdown: a request that reached an open connection before the signal is still answered,
//! and the drain is bounded, even with a client that never finishes its request.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::http::{AppState, router};

/// A client must send its request headers within this time; it also closes a keep-alive
/// connection left idle that long (hyper counts the wait for the next request).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// After the signal, requests already on their way to open connections are read in this time.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// The longest the server waits for requests in flight before it exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(8);

/// Serves the API until `shutdown` resolves (see `serve`).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve(listener, router(state), shutdown).await
}

/// Serves `app` until `shutdown` resolves: then stops accepting, answers what it has received,
/// and returns within `SHUTDOWN_GRACE + DRAIN_LIMIT`. The API and the metrics listener both
/// run here, with the same timeouts.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        // The peer address feeds the rate limiter's per-client counters.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            crate::http::limits::serve(request, app.clone())
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let open = crate::telemetry::OpenConnection::start();
        tokio::spawn(async move {
            let _open = open;
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }

    // New connections are refused from here on.
    drop(listener);
    tokio::time::sleep(SHUTDOWN_GRACE).await;
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
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
