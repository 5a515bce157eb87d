//! A request body that must arrive whole within the body read timeout.
//!
//! Counted from when the request's head was parsed, over the whole body (not per chunk,
//! which a client sending a byte now and then would never trip). Past it the body fails
//! with [`BodyTimedOut`], which the Router answers 408.

use bytes::Bytes;
use herald_core::problem::BodyTimedOut;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

pub struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

/// `body`, failing unless it has all arrived within `timeout`.
pub fn within(body: Incoming, timeout: Duration) -> DeadlineBody {
    DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
