//! A Postgres connection closed or cut while it is set up answers 503 in Rocket.Chat's shape,
//! never 500: a tiny TCP listener in front of (or instead of) the server closes each connection
//! at once, answers garbage, or forwards the start-up and cuts the connection after the
//! server's first reply (RELIABILITY.md).

mod common;

use axum::body::Body;
use axum::http::Request;
use common::{POSTGRES_ENV, TestApp, TestDb};
use importops::Store;
use importops::config::Settings;
use importops::http::AppState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const UNAVAILABLE: &str = r#"{"success":false,"error":"Service Unavailable"}"#;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Accept, then close without a byte.
    Close,
    /// Accept, read the client's first message, answer bytes that are no Postgres message.
    Garbage,
    /// Forward to the real server, and cut both sides after the server's first reply.
    CutAfterFirstReply,
}

/// A listener that does `fault` to every connection; its port.
async fn faulty_listener(fault: Fault, upstream: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                match fault {
                    Fault::Close => drop(client),
                    Fault::Garbage => {
                        let _ = client.read(&mut buf).await;
                        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    }
                    Fault::CutAfterFirstReply => {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        // Client to server until the server has answered once, then cut.
                        let mut reply = vec![0u8; 8192];
                        loop {
                            tokio::select! {
                                n = client.read(&mut buf) => {
                                    let Ok(n @ 1..) = n else { return };
                                    if server.write_all(&buf[..n]).await.is_err() { return; }
                                }
                                n = server.read(&mut reply) => {
                                    let Ok(n @ 1..) = n else { return };
                                    let _ = client.write_all(&reply[..n]).await;
                                    return;
                                }
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// The Postgres server's `HOST:PORT` and the URL's path and query, from the test server's URL.
fn upstream_and_path(url: &str) -> (String, String) {
    let rest = url.split_once('@').map(|(_, r)| r).unwrap_or(url);
    let rest = rest.trim_start_matches("postgres://");
    let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (host_port, path.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_during_set_up_is_a_503() {
    // A real database, migrated, with a user and a token, reached through the listener.
    let Some(db) = TestDb::postgres().await else {
        assert!(std::env::var(POSTGRES_ENV).is_err());
        return;
    };
    let app = TestApp::new(&db).await;
    let admin = app.admin().await;
    let (upstream, _) = upstream_and_path(&std::env::var(POSTGRES_ENV).unwrap());
    let (_, path) = upstream_and_path(&db.url);
    for fault in [Fault::Close, Fault::Garbage, Fault::CutAfterFirstReply] {
        let port = faulty_listener(fault, upstream.clone()).await;
        let url = format!("postgres://postgres@127.0.0.1:{port}/{path}");
        let store = Store::connect_lazy(&url).expect("a lazy store");
        let faulty = TestApp {
            state: AppState::new(store.clone(), Settings::default().without_rate_limit()),
            store,
        };
        let me = faulty
            .request(
                Request::get("/api/v1/me")
                    .header("X-User-Id", &admin.user_id)
                    .header("X-Auth-Token", &admin.token)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(me.status, 503, "{fault:?}: {}", me.body);
        assert_eq!(me.body, UNAVAILABLE, "{fault:?}");
        let login = faulty
            .post(
                "/api/v1/login",
                None,
                &serde_json::json!({"user": "admin", "password": "x"}),
            )
            .await;
        assert_eq!(login.status, 503, "{fault:?}: {}", login.body);
    }
}
