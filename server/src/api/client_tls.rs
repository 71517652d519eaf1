//! Client connections over TLS (rustls): `--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`
//! and `--auto-tls`, with etcd's meanings; https client URLs; and plain connections on unix sockets (`unix://`
//! client URLs).
//!
//! A listener whose port carries both an http and an https URL (etcd allows it) looks at a connection's first
//! byte: a TLS handshake starts with 0x16, which no HTTP/1.1 request line nor HTTP/2 preface does.
//!
//! **Threading**: one task accepts; each connection's handshake runs in a task of its own (bounded in time), so a
//! slow or silent client never holds up the others. Ready connections reach the gRPC server through a channel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::api::client_conn::ClientConn;
use crate::config::TlsFiles;
use crate::error::Error;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// A client's byte stream: plain, or under TLS.
#[derive(Debug)]
pub enum ClientIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl ClientIo {
    /// The TCP socket underneath, if it is one.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            ClientIo::Plain(s) => Some(s),
            ClientIo::Tls(s) => Some(s.get_ref().0),
            ClientIo::Unix(_) => None,
        }
    }

    /// The common name of the client's certificate, if it sent one over TLS (verified by the handshake against
    /// `--trusted-ca-file`): etcd's user for `--client-cert-auth` when a request has no token.
    pub fn common_name(&self) -> Option<String> {
        let ClientIo::Tls(s) = self else { return None };
        let cert = s.get_ref().1.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
        parsed.subject().iter_common_name().find_map(|a| a.as_str().ok()).map(str::to_string)
    }
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Unix(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Unix(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Unix(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Unix(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Both sides of client TLS from the flags: the acceptor for the https client URLs (`None` when TLS is off) and
/// the dialer for other members' client URLs, both with the same certificate (auto TLS keeps its own in `dir`, made
/// for `hosts`).
pub fn configure(
    files: &TlsFiles,
    dir: &std::path::Path,
    hosts: &[String],
) -> Result<(Option<tokio_rustls::TlsAcceptor>, Dialer), Error> {
    let Some((cert, key)) = crate::consensus::tls::cert_pair(files, dir, hosts)? else {
        return Ok((None, Dialer::default()));
    };
    let mut server = crate::consensus::tls::server_config(&cert, &key, files)?;
    // gRPC over TLS negotiates HTTP/2 by ALPN (grpc-go insists on it); curl may ask for HTTP/1.1.
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut client = crate::consensus::tls::client_config(Some(files.dial_pair(&cert, &key)), files)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok((Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))), Dialer { tls: Some(Arc::new(client)) }))
}

/// Where client connections come from: a TCP port (plain ones if `plain`, TLS ones if an acceptor is given; both:
/// told apart by the first byte), or a unix socket (plain, etcd's `unix://` URLs).
#[allow(missing_debug_implementations)]
pub enum ClientListener {
    Tcp { listener: TcpListener, plain: bool, tls: Option<tokio_rustls::TlsAcceptor> },
    Unix(UnixListener),
}

/// A connection accepted, before its handshake.
enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl ClientListener {
    /// The address it listens on, for the log.
    fn name(&self) -> String {
        match self {
            ClientListener::Tcp { listener, .. } => listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            ClientListener::Unix(listener) => listener
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
        }
    }

    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            ClientListener::Tcp { listener, .. } => Ok(Accepted::Tcp(listener.accept().await?.0)),
            ClientListener::Unix(listener) => Ok(Accepted::Unix(listener.accept().await?.0)),
        }
    }
}

/// Accepts connections from `listener`, each made ready (its TLS handshake, if any) in a task of its own. The
/// stream ends when the receiver is dropped.
/// `bytes`, if given, counts every connection's bytes.
pub fn incoming(
    listener: ClientListener,
    bytes: Option<crate::api::client_conn::ClientBytes>,
) -> tonic::codegen::tokio_stream::wrappers::ReceiverStream<io::Result<ClientConn>> {
    let (tx, rx) = mpsc::channel(64);
    let (plain, tls) = match &listener {
        ClientListener::Tcp { plain, tls, .. } => (*plain, tls.clone()),
        ClientListener::Unix(_) => (true, None),
    };
    tokio::spawn(async move {
        let mut backoff = crate::accept::Backoff::new(listener.name());
        loop {
            let conn = tokio::select! {
                conn = listener.accept() => conn,
                () = tx.closed() => return,
            };
            let conn = match conn {
                Ok(c) => {
                    backoff.succeeded();
                    c
                }
                Err(e) => {
                    // Out of descriptors, say: accept fails at once until some close. Waiting keeps the
                    // connections already served from starving (see crate::accept).
                    let wait = backoff.failed(&e);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = tx.closed() => return,
                    }
                }
            };
            let (tx, tls, bytes) = (tx.clone(), tls.clone(), bytes.clone());
            tokio::spawn(async move {
                let io = match conn {
                    Accepted::Unix(c) => Some(ClientIo::Unix(c)),
                    Accepted::Tcp(c) => handshake(c, plain, tls).await,
                };
                if let Some(io) = io {
                    let _ = tx.send(Ok(ClientConn::new(io).counting(bytes))).await;
                }
            });
        }
    });
    tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// One connection made ready: TLS accepted if it starts a handshake (or must), else plain if allowed.
async fn handshake(conn: TcpStream, plain: bool, tls: Option<tokio_rustls::TlsAcceptor>) -> Option<ClientIo> {
    let Some(acceptor) = tls else { return Some(ClientIo::Plain(conn)) };
    if plain {
        let mut first = [0u8; 1];
        let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.peek(&mut first)).await.ok()?.ok()?;
        if peeked == 0 || first[0] != TLS_HANDSHAKE {
            return Some(ClientIo::Plain(conn));
        }
    }
    let remote = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
        Ok(Ok(s)) => Some(ClientIo::Tls(Box::new(s))),
        Ok(Err(e)) => {
            crate::logging::log("warn", "rejected connection", &[("remote-addr", remote), ("error", e.to_string())]);
            None
        }
        Err(_) => None,
    }
}

/// How this member dials other members' client URLs (a MemberAdd forwarded to the leader, the corruption check):
/// an `https://` URL over TLS with this member's client certificate (for `--client-cert-auth`), checking the other
/// member against `--trusted-ca-file`, or not at all under auto TLS, as etcd does.
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Dialer {
    /// A gRPC channel to `url` (`http://` or `https://`).
    pub async fn channel(&self, url: &str) -> Result<tonic::transport::Channel, String> {
        if let Some(rest) = url.strip_prefix("unix://") {
            let path = rest.split('/').next().filter(|h| !h.is_empty()).unwrap_or(rest).to_string();
            // The URI only satisfies tonic; the connector dials the socket.
            let endpoint = tonic::transport::Endpoint::from_static("http://unix.socket");
            let connector = tower::service_fn(move |_: http::Uri| {
                let path = path.clone();
                async move { Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(UnixStream::connect(path).await?)) }
            });
            return endpoint.connect_with_connector(connector).await.map_err(|e| e.to_string());
        }
        let Some(rest) = url.strip_prefix("https://") else {
            let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).map_err(|e| e.to_string())?;
            return endpoint.connect().await.map_err(|e| e.to_string());
        };
        let Some(config) = self.tls.clone() else { return Err(format!("{url}: this member has no client TLS")) };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{rest}")).map_err(|e| e.to_string())?;
        let connector = tower::service_fn(move |uri: http::Uri| {
            let config = Arc::clone(&config);
            async move {
                let host = uri.host().unwrap_or("localhost").to_string();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                let _ = tcp.set_nodelay(true);
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        endpoint.connect_with_connector(connector).await.map_err(|e| e.to_string())
    }
}
