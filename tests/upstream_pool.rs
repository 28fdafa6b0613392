//! sluice's own HTTP/1.1 upstream connections (`relay::h1client`): keep-alive reuse,
//! upstreams that close idle connections, and answers that must not be reused.
//! The upstream here is a raw TCP server that counts the connections it accepts.

mod common;

use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

/// Serves requests on each connection in turn with `answer(n)` (n = request number on
/// that connection); closes a connection idle for `idle_close`, or after an answer
/// that says `connection: close`.
fn upstream(idle_close: Duration, answer: fn(usize) -> Vec<u8>) -> Upstream {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (acc, ans) = (accepted.clone(), answered.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            acc.fetch_add(1, Ordering::SeqCst);
            let ans = ans.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(idle_close));
                let mut buf = Vec::new();
                for n in 0.. {
                    // one request; a closed or too long idle connection ends here (closed)
                    if !read_request(&mut c, &mut buf) {
                        return;
                    }
                    let resp = answer(n);
                    // Counted before the write: the client may read the answer and
                    // check the count before this thread runs again.
                    ans.fetch_add(1, Ordering::SeqCst);
                    if c.write_all(&resp).is_err() {
                        return;
                    }
                    if String::from_utf8_lossy(&resp)
                        .to_ascii_lowercase()
                        .contains("connection: close")
                    {
                        return;
                    }
                }
            });
        }
    });
    Upstream {
        addr,
        accepted,
        answered,
    }
}

const JSON: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}"#;

fn json_answer(_: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{JSON}",
        JSON.len()
    )
    .into_bytes()
}

fn chunked_answer(_: usize) -> Vec<u8> {
    let (a, b) = JSON.split_at(40);
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

fn closing_answer(_: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{JSON}",
        JSON.len()
    )
    .into_bytes()
}

/// `n` requests one after another on one client connection, `pause` apart; every one
/// must be a 200 with the upstream's body. A raw connection, not a pooled HTTP client:
/// a client pool may open a second connection when it races its own keep-alive
/// bookkeeping, and that connection can land on another worker thread (another idle
/// list), which would make the connection counts below meaningless.
async fn sequential(gw: &Gateway, n: usize, pause: Duration) {
    let port = gw.port;
    tokio::task::spawn_blocking(move || {
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut w = sock.try_clone().expect("clone");
        let mut r = std::io::BufReader::new(sock);
        let body = message_body(false).to_string();
        for i in 0..n {
            write!(
                w,
                "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: {TENANT_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .expect("send");
            let resp = read_resp(&mut r);
            assert_eq!(resp.status, 200, "request {i}");
            assert_eq!(resp.header("connection"), Some("keep-alive"), "request {i}");
            assert_eq!(resp.json()["content"][0]["text"], "hi", "request {i}");
            std::thread::sleep(pause);
        }
    })
    .await
    .expect("client thread");
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_connections_are_reused() {
    for answer in [json_answer as fn(usize) -> Vec<u8>, chunked_answer] {
        let up = upstream(Duration::from_secs(30), answer);
        let gw = start_gateway(&format!("http://{}", up.addr));
        sequential(&gw, 10, Duration::ZERO).await;
        assert_eq!(up.answered.load(Ordering::SeqCst), 10);
        // One client connection is served by one worker thread, whose idle list hands
        // the same upstream connection back every time.
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1, "{}", gw.logs());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_the_upstream_closed_while_idle_are_not_used() {
    let up = upstream(Duration::from_millis(50), json_answer);
    let gw = start_gateway(&format!("http://{}", up.addr));
    sequential(&gw, 5, Duration::from_millis(200)).await;
    assert_eq!(up.answered.load(Ordering::SeqCst), 5);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
    assert!(
        !gw.logs().contains("failed before responding"),
        "a closed idle connection was tried: {}",
        gw.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_close_answers_are_not_pooled() {
    let up = upstream(Duration::from_secs(30), closing_answer);
    let gw = start_gateway(&format!("http://{}", up.addr));
    sequential(&gw, 4, Duration::from_millis(20)).await;
    assert_eq!(up.accepted.load(Ordering::SeqCst), 4);
}
