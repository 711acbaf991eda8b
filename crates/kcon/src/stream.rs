//! The consumer's records as a `Stream`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::consumer::Consumer;
use crate::error::{Error, Outcome};
use crate::record::Record;

type Pending<'a> =
    Pin<Box<dyn Future<Output = (&'a mut Consumer, Result<Record, Error>)> + Send + 'a>>;

/// The records of a consumer as a [`Stream`] ([`Consumer::stream`]): each item is what
/// [`Consumer::recv`] returns. After a fatal error or once the consumer is closed, that error
/// is the last item.
///
/// # Cancel safety
///
/// Dropping the stream, or a future polling it, while a record is waited for loses nothing: the
/// consumer's receiving calls are cancel-safe ([`Consumer::recv`]).
pub struct RecordStream<'a> {
    consumer: Option<&'a mut Consumer>,
    pending: Option<Pending<'a>>,
    ended: bool,
}

// Here rather than with the consumer's other receiving calls: the stream is a view of the
// consumer, and the consumer does not depend on it.
impl Consumer {
    /// The records as a [`Stream`]: each item is what
    /// [`recv`](Consumer::recv) returns. The stream ends after the consumer is closed or its
    /// member hit a fatal error (the error is its last item).
    ///
    /// ```no_run
    /// # async fn f(consumer: &mut kcon::Consumer) -> Result<(), kcon::Error> {
    /// use std::future::poll_fn;
    /// use std::pin::Pin;
    /// use futures_core::Stream;
    ///
    /// let mut stream = consumer.stream();
    /// while let Some(record) = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await {
    ///     let record = record?;
    ///     println!("{}", record.offset);
    /// #   break;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stream(&mut self) -> RecordStream<'_> {
        RecordStream::new(self)
    }
}

impl<'a> RecordStream<'a> {
    fn new(consumer: &'a mut Consumer) -> RecordStream<'a> {
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
                    && matches!(e.outcome(), Outcome::Close | Outcome::Closed)
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
