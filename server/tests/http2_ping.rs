//! A client's HTTP/2 PING is answered promptly even with no response to leave with: the member holds a PING ACK
//! for at most 10 ms so that it shares the next response's `writev` (`api::client_conn`), and a timer sends it when
//! no response comes. Keepalives (grpc-go's, kube-apiserver's) and BDP estimates depend on the answer.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, start};

#[test]
fn a_lone_ping_is_answered_within_the_hold() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("data"), free_port(), free_port());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&m.endpoint).await.unwrap();
        let (_requests, mut conn) = h2::client::handshake(tcp).await.unwrap();
        let mut pings = conn.ping_pong().expect("the ping handle");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let sent = Instant::now();
            tokio::time::timeout(Duration::from_secs(5), pings.ping(h2::Ping::opaque()))
                .await
                .expect("a PING answered within 5 s")
                .unwrap();
            slowest = slowest.max(sent.elapsed());
        }
        eprintln!("slowest PING answer: {slowest:?}");
        assert!(slowest < Duration::from_millis(500), "a PING waited {slowest:?} for its answer");
    });
}
