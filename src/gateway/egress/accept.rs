//! The accept loop of every gateway TCP listener (explicit proxy, transparent listener,
//! ingress forwards, the inference router, `nemoclaw gateway mock-backend`): accept, spawn the
//! connection's handler on the current tokio runtime, and deal with a failed accept.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The pause after a failed accept, so that running out of descriptors does not spin.
pub const BACKOFF: Duration = Duration::from_millis(50);

/// Accepts one connection and spawns `handle` on it.
async fn accept_one<H, F>(listener: &TcpListener, handle: &mut H) -> io::Result<()>
where
    H: FnMut(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (stream, _) = listener.accept().await?;
    tokio::spawn(handle(stream));
    Ok(())
}

/// Serves `listener` until the task is dropped. A failed accept (out of descriptors and
/// similar) is logged as a warning naming `what` and retried after [`BACKOFF`].
pub async fn serve<H, F>(listener: TcpListener, what: &'static str, mut handle: H)
where
    H: FnMut(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        if let Err(e) = accept_one(&listener, &mut handle).await {
            tracing::warn!(error = %e, "{what}: accept failed");
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

/// Serves `listener` until an accept fails, and returns that error (for a foreground command
/// that should exit rather than retry).
pub async fn serve_until_error<H, F>(listener: TcpListener, mut handle: H) -> io::Error
where
    H: FnMut(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    loop {
        if let Err(e) = accept_one(&listener, &mut handle).await {
            return e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn every_connection_gets_its_own_handler() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        let server = tokio::spawn(serve(listener, "test", move |mut s: TcpStream| {
            let n = u8::try_from(counted.fetch_add(1, Ordering::SeqCst)).unwrap_or(u8::MAX);
            async move {
                let _ = s.write_all(&[n]).await;
            }
        }));
        // Two connections open at once: each is answered by its own task.
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        let (mut x, mut y) = ([0u8; 1], [0u8; 1]);
        a.read_exact(&mut x).await.unwrap();
        b.read_exact(&mut y).await.unwrap();
        let mut got = [x[0], y[0]];
        got.sort_unstable();
        assert_eq!(got, [0, 1]);
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        server.abort();
    }
}
