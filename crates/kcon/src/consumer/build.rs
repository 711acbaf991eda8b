//! The builder's last step: here, beside what it starts, so that the configuration
//! (`config.rs`) does not depend on the consumer.

use super::Consumer;
use crate::config::ConsumerBuilder;
use crate::error::Error;

impl ConsumerBuilder {
    /// Checks the configuration and starts the consumer's tasks on the current tokio runtime
    /// (it connects lazily: a broker that is down is no error here).
    ///
    /// Fails with [`ErrorKind::Config`](crate::ErrorKind::Config) naming the property when a
    /// name is unknown, a value bad, or settings conflict.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = kcon::Consumer::builder()
    ///     .bootstrap_servers("localhost:9092")
    ///     .set("fetch.wait.max", "100")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.property(), Some("fetch.wait.max"));
    /// # }
    /// ```
    pub fn build(self) -> Result<Consumer, Error> {
        let settings = self.settings()?;
        Consumer::start(settings, self.listener, self.hooks)
    }
}
