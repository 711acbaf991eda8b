//! The consumer's records as a `Stream`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::{Consumer, Error, ErrorKind, Record};

type Pending<'a> =
    Pin<Box<dyn Future<Output = (&'a mut Consumer, Result<Record, Error>)> + Send + 'a>>;

/// The records of a consumer as a [`Stream`] ([`Consumer::stream`]): each item is what
/// [`Consumer::recv`] returns. After a fatal error or once the consumer is closed, that error
/// is the last item.
///
/// Dropping the stream while a record is being waited for loses nothing: the consumer's
/// receiving calls are cancel-safe.
pub struct RecordStream<'a> {
    consumer: Option<&'a mut Consumer>,
    pending: Option<Pending<'a>>,
    ended: bool,
}

impl<'a> RecordStream<'a> {
    pub(crate) fn new(consumer: &'a mut Consumer) -> RecordStream<'a> {
        RecordStream {
            consumer: Some(consumer),
            pending: None,
            ended: false,
        }
    }
}

impl Stream for RecordStream<'_> {
    type Item = Result<Record, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.pending.is_none() {
            // Invariant: the consumer is back in place whenever no receive is pending.
            let Some(consumer) = self.consumer.take() else {
                return Poll::Ready(None);
            };
            self.pending = Some(Box::pin(async move {
                let r = consumer.recv().await;
                (consumer, r)
            }));
        }
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match pending.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((consumer, result)) => {
                self.pending = None;
                self.consumer = Some(consumer);
                if let Err(e) = &result
                    && matches!(e.kind(), ErrorKind::Fatal | ErrorKind::Closed)
                {
                    self.ended = true;
                }
                Poll::Ready(Some(result))
            }
        }
    }
}

impl std::fmt::Debug for RecordStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("waiting", &self.pending.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}
