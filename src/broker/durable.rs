//! When a publish may be acknowledged: once every store write it caused is durable, the
//! log append a forwarding rule asked for and the rows it queued for persistent
//! sessions (invariant 1 in docs/ARCHITECTURE.md).

use crate::store::{Queued, StoreError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::sync::oneshot;

/// Resolves to the event's store seq (0 when it was not appended to the log) once
/// everything it wrote is durable, or to the first failure.
pub struct Durable {
    log: Option<oneshot::Receiver<Result<u64, StoreError>>>,
    queued: Vec<oneshot::Receiver<Result<Queued, StoreError>>>,
    seq: u64,
}

impl Durable {
    /// Nothing to wait for yet: `None` when neither part is ever added.
    pub(super) fn build(
        log: Option<oneshot::Receiver<Result<u64, StoreError>>>,
        queued: Vec<oneshot::Receiver<Result<Queued, StoreError>>>,
    ) -> Option<Durable> {
        if log.is_none() && queued.is_empty() {
            return None;
        }
        Some(Durable {
            log,
            queued,
            seq: 0,
        })
    }

    /// The outcome if it is known now, without waiting.
    pub fn try_done(&mut self) -> Option<Result<u64, StoreError>> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(self).poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }
}

impl Future for Durable {
    type Output = Result<u64, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(rx) = this.log.as_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(Ok(seq))) => {
                    this.seq = seq;
                    this.log = None;
                }
                Poll::Ready(Ok(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Err(_)) => return Poll::Ready(Err(StoreError::Closed)),
            }
        }
        while let Some(rx) = this.queued.last_mut() {
            match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                // A full queue or a session that is gone loses that subscriber's copy
                // (counted by the store); the publisher is still acknowledged.
                Poll::Ready(Ok(Ok(_))) => {
                    this.queued.pop();
                }
                Poll::Ready(Ok(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Err(_)) => return Poll::Ready(Err(StoreError::Closed)),
            }
        }
        Poll::Ready(Ok(this.seq))
    }
}
