//! Accepted connections: `TCP_NODELAY` on every socket, and a connection that sends and
//! receives nothing for CLIENT_TIMEOUT while none of its requests is being handled is closed:
//! half-sent requests, idle keep-alive connections, clients that stopped reading an answer.
//! (A request whose handler is busy keeps its connection; a body that stalls is cut off by
//! the body limits.)

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, IntoResponse, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Requests being handled, per connection (keyed by the peer's address and port).
#[derive(Clone, Default)]
pub struct Registry {
    busy: Arc<Mutex<HashMap<String, Arc<AtomicUsize>>>>,
}

impl Registry {
    fn register(&self, peer: String) -> Arc<AtomicUsize> {
        let counter = Arc::new(AtomicUsize::new(0));
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).insert(peer, counter.clone());
        counter
    }

    /// Removes a closed connection's entry, unless a new connection reusing the same address
    /// and port has replaced it already.
    fn forget(&self, peer: &str, counter: &Arc<AtomicUsize>) {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy.get(peer).is_some_and(|current| Arc::ptr_eq(current, counter)) {
            busy.remove(peer);
        }
    }

    fn counter(&self, peer: &str) -> Option<Arc<AtomicUsize>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).get(peer).cloned()
    }
}

/// Wraps the TCP acceptor.
pub struct GuardedAcceptor<A> {
    pub inner: A,
    pub registry: Registry,
    pub timeout: Duration,
}

impl<A: Acceptor<Io = TcpStream>> Acceptor for GuardedAcceptor<A> {
    type Io = GuardedIo;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let (stream, local, remote, scheme) = self.inner.accept().await?;
        // Answers written after their headers must not wait for a delayed ACK (Nagle).
        stream.set_nodelay(true)?;
        let peer = remote.to_string();
        let busy = self.registry.register(peer.clone());
        let io = GuardedIo {
            inner: stream,
            busy,
            timeout: self.timeout,
            idle: Box::pin(tokio::time::sleep(self.timeout)),
            reading_request: false,
            registry: self.registry.clone(),
            peer,
        };
        Ok((io, local, remote, scheme))
    }
}

/// A connection that fails its reads and writes once it has been idle too long with no
/// request of its own in the handlers; hyper then closes it.
pub struct GuardedIo {
    inner: TcpStream,
    busy: Arc<AtomicUsize>,
    timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
    /// Bytes of a request arrived since the last answer, and no handler has it yet.
    reading_request: bool,
    registry: Registry,
    peer: String,
}

impl GuardedIo {
    fn active(&mut self) {
        self.reading_request = false;
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.idle.as_mut().reset(deadline);
    }

    /// Bytes arrived. While no request is in a handler they belong to a request being
    /// received: its headers get one timeout from their first byte, so trickling them in a
    /// byte at a time cannot keep the connection open.
    fn received(&mut self) {
        if self.busy.load(Ordering::Acquire) > 0 {
            self.active();
        } else if !self.reading_request {
            self.active();
            self.reading_request = true;
        }
    }

    /// Called when the socket is not ready: an error once the connection has idled too long.
    fn check_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        while self.idle.as_mut().poll(cx).is_ready() {
            if self.busy.load(Ordering::Acquire) == 0 {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")));
            }
            // A handler is working for this connection: not idle.
            self.active();
        }
        Poll::Pending
    }
}

impl GuardedIo {
    /// A write that made progress is activity; one that could not is idle time.
    fn after_write(&mut self, cx: &mut Context<'_>, written: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                self.active();
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx),
        }
    }
}

impl Drop for GuardedIo {
    fn drop(&mut self) {
        self.registry.forget(&self.peer, &self.busy);
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check_idle(cx),
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts each request as busy on its connection while a handler works on it.
pub struct TrackRequests<E> {
    pub inner: E,
    pub registry: Registry,
}

impl<E: Endpoint> Endpoint for TrackRequests<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let counter = self.registry.counter(&req.remote_addr().to_string());
        let _busy = counter.map(|counter| {
            counter.fetch_add(1, Ordering::AcqRel);
            BusyGuard(counter)
        });
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

struct BusyGuard(Arc<AtomicUsize>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
