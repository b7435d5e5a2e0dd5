//! The sockets a server accepts, and the HTTP/2 settings of every Sepal server and client
//! (clients get them through [`crate::tls::ClientTls::endpoint`] or [`tuned`]).
//!
//! tonic applies its `tcp_nodelay` setting only to listeners it binds itself; a server fed
//! with an already-bound listener (as every Sepal server is, so tests can bind port 0) gets
//! the kernel's default, Nagle's algorithm on. With delayed ACKs on the other side, each
//! small gRPC message that follows another then waits ~40 ms for an ACK: most of a round's
//! time, measured. So every accepted socket gets TCP_NODELAY here.

use std::io;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::transport::{Endpoint, Server};

/// The connections `listener` accepts, each with TCP_NODELAY set, for
/// `Server::serve_with_incoming*`.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        if let Err(e) = stream.set_nodelay(true) {
            // Still usable, only slower: serve it.
            tracing::warn!("cannot set TCP_NODELAY on an accepted connection: {e}");
        }
        Ok(stream)
    })
}

/// The flow-control window of one HTTP/2 stream: how much of a message a peer may send
/// before the receiver has read any. hyper's default (1 MiB on servers, 2 MiB on clients)
/// made every 20 MiB object chunk wait on 10 to 20 window updates.
pub const STREAM_WINDOW: u32 = 16 << 20;

/// The flow-control window of a whole connection: two streams' worth.
pub const CONNECTION_WINDOW: u32 = 2 * STREAM_WINDOW;

/// The largest HTTP/2 frame a Sepal peer accepts. hyper's default, 16 KiB, cut a 1 GiB model
/// into 65,536 frames, each parsed, accounted and copied on its own; measured on the
/// large-model benchmark, 1 MiB frames took 1.3 to 1.9 s of CPU off its 25 s.
pub const MAX_FRAME: u32 = 1 << 20;

/// A server with Sepal's HTTP/2 settings (windows and frame size above).
pub fn server() -> Server {
    Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
}

/// `endpoint` with Sepal's HTTP/2 settings and TCP_NODELAY.
pub fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = Box::pin(incoming(listener));
        let _client = TcpStream::connect(addr).await.unwrap();
        let server_side = accepted.next().await.unwrap().unwrap();
        assert!(server_side.nodelay().unwrap(), "the accepted socket has TCP_NODELAY");
    }
}
