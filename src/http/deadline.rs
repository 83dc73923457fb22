//! The body read timeout: a request body must arrive within `--body-read-timeout` of its
//! headers, however slowly it trickles in; past it the read fails and the route answers 408
//! (`body::JsonBody`), and hyper closes the connection on the unread rest.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::connections::Activity;

/// The error a body read gets once its time is up.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body read timeout")]
pub struct BodyTimedOut;

pin_project! {
    /// A request body that fails with [`BodyTimedOut`] once `sleep` ends, and tells its
    /// connection when it has been read to its end.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        deadline: tokio::time::Instant,
        // Made at the first read that has to wait (most bodies never do; GETs have none),
        // boxed so that the body is `Unpin` when `inner` is.
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        activity: Option<Activity>,
    }
}

impl<B: Body> DeadlineBody<B> {
    pub fn new(inner: B, timeout: Duration, activity: Activity) -> Self {
        let mut body = DeadlineBody {
            inner,
            deadline: tokio::time::Instant::now() + timeout,
            sleep: None,
            activity: Some(activity),
        };
        if body.inner.is_end_stream() {
            body.ended();
        }
        body
    }

    fn ended(&mut self) {
        if let Some(activity) = self.activity.take() {
            activity.busy();
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                if (frame.is_none() || this.inner.is_end_stream())
                    && let Some(activity) = this.activity.take()
                {
                    activity.busy();
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*this.deadline)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read failed because its time was up (the error may be wrapped).
pub fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<BodyTimedOut>() {
            return true;
        }
        next = error.source();
    }
    false
}
