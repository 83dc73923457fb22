//! What a client can hold of a running server, over real TCP connections: a stalled body gets
//! 408 in Rocket.Chat's shape, more than 100 header fields get the JSON 431, an idle
//! connection is closed, and at the connection limit the connection waiting longest is closed
//! to make room for a new one. Bounds here are generous (a loaded machine); the figures are
//! measured by reliability/stalled.py.

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use importops::config::Settings;
use importops::connections::Connections;
use importops::http::AppState;
use importops::server::{Bounds, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for any answer on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

struct Server {
    addr: std::net::SocketAddr,
    _db: TestDb,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(header_read: Duration, body_read: Duration, connections: usize) -> Server {
    let db = TestDb::sqlite();
    let state = AppState::new(db.open().await, Settings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bounds = Bounds {
        header_read_timeout: header_read,
        body_read_timeout: body_read,
        connections: Connections::new(connections),
        upload_body_limit: importops::http::body::MAX_BODY_BYTES,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(run(listener, state, bounds, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        _db: db,
        _stop: stop,
    }
}

/// Reads until the peer closes (or `PATIENCE` passes): everything it sent.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Headers of a login whose body is announced and never sent.
fn stalled_login() -> &'static [u8] {
    b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"user\""
}

#[tokio::test]
async fn a_stalled_body_gets_408_in_rocketchats_shape() {
    let server = server(Duration::from_secs(30), Duration::from_secs(1), 100).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(stalled_login()).await.unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.ends_with(r#"{"success":false,"error":"Request Timeout"}"#),
        "{answer}"
    );
    assert!(
        started.elapsed() < PATIENCE,
        "the connection is closed after the 408"
    );
}

#[tokio::test]
async fn a_body_that_trickles_in_is_timed_out_as_a_whole() {
    let server = server(Duration::from_secs(30), Duration::from_secs(1), 100).await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(stalled_login()).await.unwrap();
    // A byte every 100 ms: each read is short, the body as a whole is not.
    let trickle = tokio::spawn(async move {
        for _ in 0..90 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, read.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    trickle.abort();
}

#[tokio::test]
async fn more_than_100_header_fields_get_the_json_431() {
    let server = server(Duration::from_secs(30), Duration::from_secs(10), 100).await;
    for (fields, status) in [(100, "200"), (101, "431"), (1000, "431")] {
        let mut request = String::from("GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        // Host and Connection count too.
        for n in 0..fields - 2 {
            request.push_str(&format!("x-field-{n}: v\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{fields} fields: {answer}"
        );
        if status == "431" {
            assert!(
                answer.ends_with(r#"{"success":false,"error":"Request Header Fields Too Large"}"#),
                "{fields} fields: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn an_idle_connection_and_a_stalled_request_line_are_closed() {
    let server = server(Duration::from_secs(1), Duration::from_secs(10), 100).await;
    // Idle after an answer (keep-alive), idle from the start, and half a request line.
    let mut kept = TcpStream::connect(server.addr).await.unwrap();
    kept.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /liv").await.unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut kept).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    read_to_close(&mut silent).await;
    read_to_close(&mut half).await;
    assert!(started.elapsed() < PATIENCE, "all three are closed");
}

#[tokio::test]
async fn at_the_limit_the_connection_waiting_longest_makes_room() {
    let limit = 4;
    let server = server(Duration::from_secs(60), Duration::from_secs(60), limit).await;
    let mut stalled = Vec::new();
    for _ in 0..limit {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(stalled_login()).await.unwrap();
        stalled.push(stream);
        // Accepted in this order (the registry orders by time, then arrival).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fresh = TcpStream::connect(server.addr).await.unwrap();
    fresh
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut fresh).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The first stalled connection was closed without an answer; the others are still open.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stalled[0].read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the oldest stalled connection is closed, unanswered: {closed:?} {rest:?}"
    );
    let mut probe = [0u8; 1];
    let still_open = tokio::time::timeout(
        Duration::from_millis(300),
        stalled[limit - 1].read(&mut probe),
    )
    .await;
    assert!(still_open.is_err(), "the newest stalled connection is kept");
}
