//! One connection between members: plain TCP, TCP under TLS (rustls) when peer TLS is on, or a unix socket
//! (`unix://` peer URLs). Everything above (frames, snapshot images, the join question) reads and writes it the
//! same way.
//!
//! **Threading**: a connection belongs to one thread at a time (a writer thread, or a listener's reader thread).
//! The TLS handshake happens in `dial`/`accept`, bounded by the socket's timeouts, before the first frame.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, ServerConnection, StreamOwned};

use crate::error::Error;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a member listens for the others: a TCP address, or a unix socket (a `unix://` peer URL).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl PeerAddr {
    /// The address a peer URL names.
    pub fn of(url: &crate::config::Url) -> PeerAddr {
        match &url.unix {
            Some(path) => PeerAddr::Unix(path.clone()),
            None => PeerAddr::Tcp(url.addr),
        }
    }
}

/// Removes a unix socket's file left by an earlier run, before listening on it again (as etcd does); `what`
/// names the URL in an error.
pub fn remove_stale_socket(path: &std::path::Path, what: &str) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(format!("remove stale socket {what}"))(e)),
        _ => Ok(()),
    }
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Tcp(a) => write!(f, "{a}"),
            PeerAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A connection to or from a member.
#[derive(Debug)]
pub enum PeerConn {
    Plain(TcpStream),
    Unix(UnixStream),
    /// This member dialled.
    Client(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// This member accepted.
    Server(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl PeerConn {
    /// Runs the client side of a TLS handshake on `tcp`, for the member at `host`.
    pub fn tls_client(tcp: TcpStream, config: Arc<rustls::ClientConfig>, host: &str) -> Result<Self, Error> {
        let name = crate::consensus::tls::server_name(host)?;
        let conn = ClientConnection::new(config, name).map_err(|e| Error::Refused(format!("TLS to {host}: {e}")))?;
        let mut stream = StreamOwned::new(conn, tcp);
        handshake(&mut stream.conn, &mut stream.sock)
            .map_err(go_words)
            .map_err(Error::io(format!("TLS handshake with {host}")))?;
        Ok(PeerConn::Client(Box::new(stream)))
    }

    /// Runs the server side of a TLS handshake on an accepted `tcp`.
    pub fn tls_server(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> Result<Self, Error> {
        let conn = ServerConnection::new(config).map_err(|e| Error::Refused(format!("TLS: {e}")))?;
        let mut stream = StreamOwned::new(conn, tcp);
        handshake(&mut stream.conn, &mut stream.sock)
            .map_err(go_words)
            .map_err(Error::io("TLS handshake with a peer"))?;
        Ok(PeerConn::Server(Box::new(stream)))
    }

    /// Why the other side closed a TLS connection we dialled, if it said (an alert, in Go's words).
    pub fn close_reason(&mut self) -> Option<String> {
        let PeerConn::Client(s) = self else { return None };
        s.sock.set_read_timeout(Some(Duration::from_millis(10))).ok()?;
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Err(e) if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) => {
                Some(crate::consensus::tls_policy::describe(&e))
            }
            _ => None,
        }
    }

    /// The socket underneath.
    pub fn fd(&self) -> RawFd {
        match self {
            PeerConn::Plain(s) => s.as_raw_fd(),
            PeerConn::Unix(s) => s.as_raw_fd(),
            PeerConn::Client(s) => s.sock.as_raw_fd(),
            PeerConn::Server(s) => s.sock.as_raw_fd(),
        }
    }

    /// Bounds each read from now on (`None`: no bound).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        match self {
            PeerConn::Plain(s) => s.set_read_timeout(timeout),
            PeerConn::Unix(s) => s.set_read_timeout(timeout),
            PeerConn::Client(s) => s.sock.set_read_timeout(timeout),
            PeerConn::Server(s) => s.sock.set_read_timeout(timeout),
        }
    }
}

/// A handshake failure as Go words it (see `tls_policy::describe`).
fn go_words(e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), crate::consensus::tls_policy::describe(&e))
}

/// Drives a handshake to its end within [`HANDSHAKE_TIMEOUT`] (the socket's timeouts are restored after).
fn handshake<C, D>(conn: &mut C, sock: &mut TcpStream) -> std::io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
{
    let (read, write) = (sock.read_timeout()?, sock.write_timeout()?);
    sock.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    sock.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    while conn.is_handshaking() {
        conn.complete_io(sock)?;
    }
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    sock.set_read_timeout(read)?;
    sock.set_write_timeout(write)?;
    Ok(())
}

impl Read for PeerConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            PeerConn::Plain(s) => s.read(buf),
            PeerConn::Unix(s) => s.read(buf),
            PeerConn::Client(s) => s.read(buf),
            PeerConn::Server(s) => s.read(buf),
        }
    }
}

impl Write for PeerConn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            PeerConn::Plain(s) => s.write(buf),
            PeerConn::Unix(s) => s.write(buf),
            PeerConn::Client(s) => s.write(buf),
            PeerConn::Server(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            PeerConn::Plain(s) => s.flush(),
            PeerConn::Unix(s) => s.flush(),
            PeerConn::Client(s) => s.flush(),
            PeerConn::Server(s) => s.flush(),
        }
    }
}
