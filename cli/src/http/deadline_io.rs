//! A connection's socket with a deadline for whatever the client owes next.
//!
//! [`Phase`] is where the connection stands, told by the service (a request has started,
//! it was answered) and by the socket (the first byte of the next request arrived):
//!
//! | phase | the client owes | within |
//! |---|---|---|
//! | head (a new connection, or the first byte of a request came) | the rest of the head | `header_read` |
//! | request (the head was parsed) | its body, and reading the answer | `body_read` + [`ANSWER_TIME`] |
//! | idle (answered, keep-alive) | the first byte of the next request | `keep_alive_idle` |
//!
//! Reads and writes past the deadline fail with `TimedOut`, and hyper closes the
//! connection. (hyper's own header timeout also counts the keep-alive wait before a
//! request, so it cannot give the two their own lengths.)

use super::HttpLimits;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Time a request has, past its body read timeout, to be answered and its answer read.
pub const ANSWER_TIME: Duration = Duration::from_secs(60);

const HEAD: u64 = 0;
const REQUEST: u64 = 1;
const IDLE: u64 = 2;

/// Where one connection stands: the phase in the low two bits, above them how many times
/// it changed (so that a socket notices a change it did not see happen).
#[derive(Debug)]
pub struct Phase(AtomicU64);

impl Phase {
    pub fn new() -> Arc<Phase> {
        Arc::new(Phase(AtomicU64::new(HEAD)))
    }

    fn set(&self, phase: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some((((now >> 2) + 1) << 2) | phase)
            });
    }

    fn get(&self) -> (u64, u64) {
        let now = self.0.load(Ordering::Acquire);
        (now & 3, now >> 2)
    }

    /// The service got a request's head.
    pub fn request_started(&self) {
        self.set(REQUEST);
    }

    /// The service answered; the connection waits for the next request.
    pub fn answered(&self) {
        self.set(IDLE);
    }
}

pub struct DeadlineIo {
    inner: TcpStream,
    phase: Arc<Phase>,
    seen: u64,
    windows: [Duration; 3],
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineIo {
    pub fn new(inner: TcpStream, phase: Arc<Phase>, limits: HttpLimits) -> DeadlineIo {
        let windows = [
            limits.header_read,
            limits.body_read + ANSWER_TIME,
            limits.keep_alive_idle,
        ];
        DeadlineIo {
            inner,
            seen: phase.get().1,
            phase,
            deadline: Box::pin(tokio::time::sleep(windows[HEAD as usize])),
            windows,
        }
    }

    /// Move the deadline when the phase changed; fail once it has passed.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let (phase, changes) = self.phase.get();
        if changes != self.seen {
            self.seen = changes;
            let window = self.windows[phase as usize];
            self.deadline.as_mut().reset(Instant::now() + window);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took too long",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let (phase, _) = self.phase.get();
            if phase == IDLE {
                // The next request began: its head is due within the header timeout.
                self.phase.set(HEAD);
                let _ = self.check(cx);
            }
        }
        read
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
