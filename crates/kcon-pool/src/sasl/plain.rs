//! PLAIN (RFC 4616), client side: one message, `authzid NUL authcid NUL passwd`.
//!
//! The authorization identity is left empty, as Kafka's Java client and librdkafka send it:
//! Kafka's `PlainSaslServer` accepts only an empty one or one equal to the user name.

use super::{Reply, SaslClient, SaslFailure};

/// The one message sent; the server answers it with nothing (accepted) or an error.
pub(crate) struct PlainSent;

impl PlainSent {
    /// The initial response. User name and password contain no NUL ([`PoolConfig::validate`]
    /// refuses them), so the message splits back into exactly its three parts.
    ///
    /// [`PoolConfig::validate`]: crate::PoolConfig::validate
    pub(crate) fn start(username: &str, password: &str) -> (PlainSent, Vec<u8>) {
        let mut message = Vec::with_capacity(2 + username.len() + password.len());
        message.push(0);
        message.extend_from_slice(username.as_bytes());
        message.push(0);
        message.extend_from_slice(password.as_bytes());
        (PlainSent, message)
    }
}

impl SaslClient for PlainSent {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        // RFC 4616 §2: the server sends no data, only the outcome.
        if !challenge.is_empty() {
            return Err(SaslFailure::Protocol(format!(
                "PLAIN has no server challenge, got {} bytes",
                challenge.len()
            )));
        }
        Ok(Reply::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_empty_authzid_user_and_password() {
        let (_, m) = PlainSent::start("alice", "s3cret");
        assert_eq!(m, b"\0alice\0s3cret");
        assert!(matches!(Box::new(PlainSent).receive(b""), Ok(Reply::Done)));
        assert!(Box::new(PlainSent).receive(b"x").is_err());
    }
}
