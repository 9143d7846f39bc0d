//! Accepts connections for the node's servers (the client gRPC port, the
//! internal port and the HTTP port): sets TCP_NODELAY (small acks and Raft replies must not
//! wait for Nagle's algorithm and the peer's delayed ACK) and holds one permit of a
//! bounded pool per open connection. At the limit the node stops accepting,
//! so new connections wait in the kernel's backlog instead of being served
//! with memory the node does not have. A connection that sends nothing
//! within the handshake timeout is closed, so silent connections cannot
//! hold the pool. On a port with TLS the whole TLS handshake must end
//! within that timeout too (each handshake runs on its own task, so a slow
//! one never holds up the next accept); a client that speaks plain text to
//! it fails the handshake and is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::server::Acceptor;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// An accepted connection that frees its permit when closed.
pub struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first bytes arrive: when the connection is given up.
    handshake: Option<Pin<Box<tokio::time::Sleep>>>,
    /// How long the connection may send nothing (after its first bytes),
    /// and when that runs out.
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.handshake = None;
                if let Some((after, deadline)) = self.idle.as_mut() {
                    deadline.as_mut().reset(tokio::time::Instant::now() + *after);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(deadline) = self.handshake.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        tracing::debug!("closing a connection that sent nothing within the handshake timeout");
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no handshake in time")));
                    }
                } else if let Some((_, deadline)) = self.idle.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    tracing::debug!("closing a connection that sent nothing within the idle timeout");
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle for too long")));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A connection as a server reads it: plain, or after a TLS handshake.
pub enum Served {
    /// Plain text.
    Plain(LimitedStream),
    /// TLS.
    Tls(Box<tokio_rustls::server::TlsStream<LimitedStream>>),
}

impl Served {
    fn tcp(&self) -> &LimitedStream {
        match self {
            Served::Plain(stream) => stream,
            Served::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl Connected for Served {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for Served {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Served::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Served::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Served {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Served::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Served::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Served::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Served::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Served::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Served::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Served::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Served::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Served::Plain(stream) => stream.is_write_vectored(),
            Served::Tls(tls) => tls.is_write_vectored(),
        }
    }
}

/// How a port accepts connections.
#[derive(Clone)]
pub struct Accepting {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time a new connection has to send its first bytes (and to finish
    /// its TLS handshake).
    pub handshake_timeout: Duration,
    /// Time a connection may then send nothing; `None`: no limit (the
    /// gRPC ports, where keepalive pings find dead peers).
    pub idle_timeout: Option<Duration>,
    /// TLS, when the port speaks it.
    pub tls: Option<Acceptor>,
}

/// The stream of accepted connections, at most `max_connections` open at
/// once, each closed unless it sends something within `handshake_timeout`
/// and, with `tls`, completes its TLS handshake within it.
pub fn incoming(listener: TcpListener, accepting: Accepting) -> ReceiverStream<io::Result<Served>> {
    let Accepting { max_connections, handshake_timeout, idle_timeout, tls } = accepting;
    let (sender, receiver) = mpsc::channel(1);
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    tokio::spawn(async move {
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = sender.closed() => return,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = sender.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "failed to set TCP_NODELAY");
                    }
                    let handshake = Some(Box::pin(tokio::time::sleep(handshake_timeout)));
                    let idle = idle_timeout.map(|after| (after, Box::pin(tokio::time::sleep(after))));
                    let stream = LimitedStream { stream, _permit: permit, handshake, idle };
                    match &tls {
                        None => {
                            if sender.send(Ok(Served::Plain(stream))).await.is_err() {
                                return;
                            }
                        }
                        Some(acceptor) => {
                            let (acceptor, sender) = (acceptor.clone(), sender.clone());
                            tokio::spawn(async move {
                                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(tls)) => {
                                        let _ = sender.send(Ok(Served::Tls(Box::new(tls)))).await;
                                    }
                                    Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("closing a connection whose TLS handshake took too long"),
                                }
                            });
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a client connection");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// The accepted connections of the HTTP port, for axum.
pub struct HttpListener {
    connections: mpsc::Receiver<io::Result<Served>>,
    local: std::net::SocketAddr,
}

impl HttpListener {
    /// Serves what [`incoming`] accepts on `local`.
    pub fn new(connections: ReceiverStream<io::Result<Served>>, local: std::net::SocketAddr) -> Self {
        HttpListener { connections: connections.into_inner(), local }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Served;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.connections.recv().await {
                Some(Ok(served)) => {
                    let peer = served.tcp().stream.peer_addr().unwrap_or(self.local);
                    return (served, peer);
                }
                Some(Err(_)) => continue,
                // The accept task ends only with the runtime.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
