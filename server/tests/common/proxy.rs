//! A TCP proxy in front of a member's peer port, for partitions without network namespaces: the member listens on
//! its real peer port and advertises the proxy's, so every peer message sent *to* it crosses the proxy. A cut
//! proxy closes the connections it carries and holds new ones open without forwarding a byte (a blackhole: the
//! senders' connects succeed, their writes go nowhere); healed, it drops the held ones, so senders reconnect. Cutting
//! one member's proxy is an asymmetric partition: it still sends, but hears nothing.
//!
//! A proxy can also cut only some senders, told apart by source address: members that listen for peers on their
//! own loopback address (127.0.1.x) dial from it. Cutting everything to a member and, at every other member's proxy,
//! what it sends, is a full (symmetric) partition of that member.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy (its task ends with the test's runtime).
#[derive(Debug, Clone)]
pub struct PeerProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    /// Senders cut off (by source address) while the proxy is not cut as a whole.
    from: Arc<Mutex<HashSet<IpAddr>>>,
    /// Bumped at every cut and heal: connections of an older generation close.
    generation: watch::Sender<u64>,
    pub forwarded: Arc<AtomicU64>,
}

impl PeerProxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `target`.
    pub async fn start(target: SocketAddr) -> PeerProxy {
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
        let p = PeerProxy { port, cut: Arc::default(), from: Arc::default(), generation, forwarded: Arc::default() };
        let proxy = p.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, sender)) = listener.accept().await else { continue };
                tokio::spawn(proxy.clone().carry(conn, sender.ip(), target));
            }
        });
        p
    }

    /// Cuts (true) or heals (false) every connection through the proxy.
    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Cuts (true) or heals (false) what `sender` sends through the proxy. Every connection it carries closes, as
    /// at [`PeerProxy::set_cut`]; the senders not cut redial at once.
    pub fn set_cut_from(&self, sender: IpAddr, cut: bool) {
        {
            let mut from = self.from.lock().unwrap_or_else(|p| p.into_inner());
            if cut {
                from.insert(sender)
            } else {
                from.remove(&sender)
            };
        }
        self.generation.send_modify(|g| *g += 1);
    }

    fn is_cut(&self, sender: IpAddr) -> bool {
        self.cut.load(Ordering::SeqCst) || self.from.lock().unwrap_or_else(|p| p.into_inner()).contains(&sender)
    }

    async fn carry(self, mut conn: TcpStream, sender: IpAddr, target: SocketAddr) {
        let mut changed = self.generation.subscribe();
        changed.mark_unchanged();
        if self.is_cut(sender) {
            // Held, not forwarded, until the next cut or heal.
            let _ = changed.changed().await;
            let _ = conn.shutdown().await;
            return;
        }
        let Ok(mut upstream) = TcpStream::connect(target).await else { return };
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream) => {}
            _ = changed.changed() => {}
        }
    }
}
