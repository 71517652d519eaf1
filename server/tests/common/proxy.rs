//! A TCP proxy in front of a member's peer port, for partitions without network namespaces: the member listens on
//! its real peer port and advertises the proxy's, so every peer message sent *to* it crosses the proxy. A cut
//! proxy closes the connections it carries and holds new ones open without forwarding a byte (a blackhole: the
//! senders' connects succeed, their writes go nowhere); healed, it drops the held ones, so senders reconnect. Cutting
//! one member's proxy is an asymmetric partition: it still sends, but hears nothing.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy (its task ends with the test's runtime).
#[derive(Debug, Clone)]
pub struct PeerProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped at every cut and heal: connections of an older generation close.
    generation: watch::Sender<u64>,
    pub forwarded: Arc<AtomicU64>,
}

impl PeerProxy {
    /// Starts a proxy on a free port forwarding to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> PeerProxy {
        // A port free when chosen may be taken before the bind (by another test process): choose again.
        let mut attempt = 0;
        let (port, listener) = loop {
            let port = super::free_port();
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break (port, l),
                Err(e) if attempt == 10 => panic!("no port for a peer proxy: {e}"),
                Err(_) => attempt += 1,
            }
        };
        let (generation, _) = watch::channel(0u64);
        let p = PeerProxy { port, cut: Arc::default(), generation, forwarded: Arc::default() };
        let proxy = p.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { continue };
                tokio::spawn(proxy.clone().carry(conn, target));
            }
        });
        p
    }

    /// Cuts (true) or heals (false) every connection through the proxy.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    async fn carry(self, mut conn: TcpStream, target: u16) {
        let mut changed = self.generation.subscribe();
        changed.mark_unchanged();
        if self.cut.load(Ordering::SeqCst) {
            // Held, not forwarded, until the next cut or heal.
            let _ = changed.changed().await;
            let _ = conn.shutdown().await;
            return;
        }
        let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await else { return };
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
            _ = changed.changed() => {}
        }
    }
}
