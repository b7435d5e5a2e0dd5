//! The sockets a server accepts.
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
