//! Whose doing an error was: one [`Cause`] for every part of kcon.
//!
//! The connection pool says it of each request that failed, and every facade above it (the
//! consumer's errors, the producer's, the admin calls', the tool's exit codes) returns the same
//! value, so the same failure reads the same whichever part met it, and an application that
//! handles a consumer's and a producer's errors (a dead-letter write, a consume-transform-produce
//! loop) matches one type.

/// Whose doing an error was. Each facade pairs it with what the application does next (its own
/// `Outcome`): the cause says where to look, the outcome what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The configuration: a property is unknown, has a bad value, or conflicts with another
    /// (the error names it).
    Config,
    /// The caller asked for something the client cannot do in its state (seeking a partition
    /// the consumer does not own, subscribing without `group.id`).
    Misuse,
    /// A broker answered with an error code, or said something of the log (an offset out of
    /// range, no committed offset, a log truncated under the position).
    Broker,
    /// The network, a connection, TLS, a timeout, or a broker missing from the metadata.
    Transport,
    /// SASL authentication.
    Authentication,
    /// A broker that does not offer an API, or no version of it that kcon speaks, that the
    /// call needs.
    Unsupported,
    /// A broker sent bytes that are not a valid answer, or a record batch that does not decode.
    Corrupt,
    /// A consumer's record handler (a `Processor`'s): a record failed for good, or so many did
    /// that the circuit breaker opened.
    Handler,
    /// A record the producer cannot send as it is: larger than `max.request.size` or
    /// `buffer.memory`, for a partition its topic does not have, or one that does not encode.
    Record,
    /// The client was closed, or the runtime its tasks ran on is shutting down.
    Closed,
}
