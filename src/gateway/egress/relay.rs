//! Moving bytes between the agent's connection and the upstream one: `splice(2)` through a
//! pipe between two TCP sockets (no copy through user space), large buffers otherwise.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::Interest;
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
/// Pipe capacity for splice.
const PIPE_SIZE: i32 = 1024 * 1024;

/// Relays two TCP connections until both directions end; a reset on either side ends both.
/// Returns the byte counts, also on error (then with the error's text).
pub async fn relay_tcp(agent: &TcpStream, upstream: &TcpStream) -> (Moved, Option<io::Error>) {
    let out = AtomicU64::new(0);
    let back = AtomicU64::new(0);
    let res = tokio::try_join!(pump(agent, upstream, &out), pump(upstream, agent, &back));
    let moved = Moved {
        out: out.load(Ordering::Relaxed),
        in_: back.load(Ordering::Relaxed),
    };
    (moved, res.err())
}

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

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // SAFETY: fcntl(F_SETPIPE_SZ) on a pipe fd we own; a failure (e.g. the pipe-max-size
    // limit) leaves the default 64 KiB capacity, which still works.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((r, w))
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: splice(2) between two fds that stay open for the whole call (borrowed from live
    // sockets and pipe ends); null offsets because neither end is a seekable file.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One direction: socket -> pipe -> socket, then a half-close of `dst` at EOF.
async fn pump(src: &TcpStream, dst: &TcpStream, count: &AtomicU64) -> io::Result<()> {
    let (pr, pw) = pipe()?;
    let (sfd, dfd) = (src.as_raw_fd(), dst.as_raw_fd());
    loop {
        // The pipe is empty here, so EAGAIN can only mean the source has no data.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                splice(sfd, pw.as_raw_fd(), PIPE_SIZE as usize)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || splice(pr.as_raw_fd(), dfd, left)) {
                Ok(m) => {
                    left -= m;
                    count.fetch_add(m as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
