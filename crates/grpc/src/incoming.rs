//! The gRPC listener's connections, capped: tonic's own listener takes every
//! connection it is offered. Here a connection is accepted only with a free
//! slot (beyond [`crate::Limits::connections`] new ones wait in the kernel's
//! accept queue, as on the HTTP listener), and gives its slot back when it
//! closes. One client address may hold at most
//! [`crate::Limits::connections_per_client`]; more are closed at once.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use openptl_app::connections::{ClientSlot, PerClient};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted connection holding its slot.
pub struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    _client: ClientSlot,
}

/// The accepted connections of a listener, at most `cap` open at once.
pub struct Capped {
    accepted: mpsc::Receiver<Conn>,
}

impl Capped {
    /// Accepts on `listener` (in a task of its own, which ends when the
    /// server drops this stream).
    pub fn new(listener: TcpListener, cap: usize, per_client: usize) -> Capped {
        let slots = Arc::new(Semaphore::new(cap.max(1)));
        let per_client = PerClient::new(per_client);
        let (tx, accepted) = mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                    () = tx.closed() => return,
                };
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a gRPC connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let Some(client) = per_client.take(peer) else {
                    // The slot goes back with it.
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let conn = Conn {
                    stream,
                    _slot: slot,
                    _client: client,
                };
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
        });
        Capped { accepted }
    }
}

impl Stream for Capped {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accepted.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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
