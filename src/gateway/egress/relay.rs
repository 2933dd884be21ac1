//! Moving bytes between the agent's connection and the upstream one: large buffers, with the
//! reading and the writing of each direction overlapped (measured faster here than `splice(2)`
//! through a pipe, which carries the veth's small segments one pipe slot each and had to
//! alternate between filling and draining).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Bytes moved each way: `out` from the agent to upstream, `in_` back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub out: u64,
    pub in_: u64,
}

/// Buffer size of the generic copy (tokio's default 8 KiB is far too small for bulk data).
const COPY_BUF: usize = 256 * 1024;

/// Relays any two streams with large buffers (for streams that are not plain sockets).
pub async fn relay_copy<A, B>(a: &mut A, b: &mut B) -> (Moved, Option<io::Error>)
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    match tokio::io::copy_bidirectional_with_sizes(a, b, COPY_BUF, COPY_BUF).await {
        Ok((out, in_)) => (Moved { out, in_ }, None),
        Err(e) => (Moved::default(), Some(e)),
    }
}

/// Size of each buffer of the pipelined copy, and how many are in flight per direction.
const CHUNK: usize = 256 * 1024;
const DEPTH: usize = 4;

/// Aborts a task when dropped (so cancelling a relay cancels its readers too).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Relays two TCP connections with reading and writing of each direction overlapped: a
/// reader task fills large buffers while the writer drains the previous ones, so a bulk
/// transfer keeps both cores busy instead of alternating. Ends when both directions end; an
/// error on either side ends both. Byte counts are returned also on error.
pub async fn relay_pipelined(agent: TcpStream, upstream: TcpStream) -> (Moved, Option<io::Error>) {
    let (ar, aw) = agent.into_split();
    let (ur, uw) = upstream.into_split();
    let out = std::sync::Arc::new(AtomicU64::new(0));
    let back = std::sync::Arc::new(AtomicU64::new(0));
    let mut up = AbortOnDrop(tokio::spawn(direction(ar, uw, out.clone())));
    let mut down = AbortOnDrop(tokio::spawn(direction(ur, aw, back.clone())));
    let joined = |r: Result<io::Result<()>, tokio::task::JoinError>| {
        r.unwrap_or_else(|e| Err(io::Error::other(e)))
    };
    // The first error ends both directions; a clean end waits for the other one.
    let err = tokio::select! {
        r = &mut up.0 => match joined(r) {
            Ok(()) => joined((&mut down.0).await).err(),
            Err(e) => Some(e),
        },
        r = &mut down.0 => match joined(r) {
            Ok(()) => joined((&mut up.0).await).err(),
            Err(e) => Some(e),
        },
    };
    let moved = Moved {
        out: out.load(Ordering::Relaxed),
        in_: back.load(Ordering::Relaxed),
    };
    (moved, err)
}

/// One direction: a reader task and this writer, `DEPTH` buffers in flight.
async fn direction(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    count: std::sync::Arc<AtomicU64>,
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;
    let (full_tx, mut full_rx) = mpsc::channel::<(Box<[u8]>, usize)>(DEPTH);
    let (empty_tx, mut empty_rx) = mpsc::channel::<Box<[u8]>>(DEPTH + 1);
    let reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let mut buf = match empty_rx.try_recv() {
                Ok(b) => b,
                Err(_) => vec![0u8; CHUNK].into_boxed_slice(),
            };
            let n = r.read(&mut buf).await?;
            if n == 0 || full_tx.send((buf, n)).await.is_err() {
                return Ok::<(), io::Error>(());
            }
        }
    }));
    while let Some((buf, n)) = full_rx.recv().await {
        w.write_all(&buf[..n]).await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
        let _ = empty_tx.try_send(buf);
    }
    // The reader has ended (EOF or an error): report which.
    let mut reader = reader;
    let res = (&mut reader.0)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
    let _ = w.shutdown().await;
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (c, s)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn half_close_and_counts() {
        let (mut agent, agent_side) = pair().await;
        let (upstream_side, mut server) = pair().await;
        let relay = tokio::spawn(relay_pipelined(agent_side, upstream_side));
        let payload = vec![7u8; 3 * CHUNK + 123];
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            agent.write_all(&sent).await.unwrap();
            agent.shutdown().await.unwrap(); // half-close: still reading
            let mut reply = Vec::new();
            agent.read_to_end(&mut reply).await.unwrap();
            reply
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), payload.len());
        server.write_all(b"done").await.unwrap();
        drop(server);
        assert_eq!(writer.await.unwrap(), b"done");
        let (moved, err) = relay.await.unwrap();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            moved,
            Moved {
                out: payload.len() as u64,
                in_: 4
            }
        );
    }
}
