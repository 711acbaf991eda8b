//! OAUTHBEARER (RFC 7628; Kafka's KIP-255 and KIP-342), client side, and the token provider the
//! application supplies.
//!
//! The client sends one initial response,
//! `n,,` `\x01auth=Bearer <token>` (`\x01<key>=<value>` per SASL extension) `\x01\x01`;
//! the server answers with nothing (accepted) or with an error document (JSON), to which the
//! client must answer a single `\x01` before the server fails the exchange (§3.2.3). Kafka's
//! `OAuthBearerSaslClient` does exactly that.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Reply, SaslClient, SaslFailure};

/// The error a token provider fails with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future [`OAuthBearerTokenProvider::token`] returns.
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<OAuthBearerToken, BoxError>> + Send + 'a>>;

/// Supplies the tokens of `sasl.mechanism=OAUTHBEARER`: the application's own code, which
/// knows its identity provider (the Java client's `AuthenticateCallbackHandler`, librdkafka's
/// `oauthbearer_token_refresh_cb`).
///
/// Called at every authentication: when a connection is set up, and again before each
/// re-authentication (KIP-368), so that a connection keeps working past the lifetime of the
/// token it started with. Calls may come from several connections at once; a provider that
/// talks to an identity provider should cache its token and refresh it ahead of expiry, and
/// retry transient failures itself: an error here fails the connection with a fatal
/// [`AuthError::TokenProvider`](crate::AuthError::TokenProvider).
pub trait OAuthBearerTokenProvider: Send + Sync + 'static {
    /// A token valid now.
    fn token(&self) -> TokenFuture<'_>;
}

/// A bearer token, with how long it stays valid and the SASL extensions to send along.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthBearerToken {
    /// The token: RFC 6750's `b64token` characters (a JWT's compact form is one).
    pub value: String,
    /// How long the token stays valid from when the provider returns it; `None` if unknown.
    /// The connection re-authenticates (with a new token) before that much time has passed,
    /// or before the session lifetime the broker gives, whichever is sooner.
    pub lifetime: Option<Duration>,
    /// SASL extensions (KIP-342), sent as `key=value` pairs: keys are letters only and not
    /// `auth`; values are printable ASCII, space, tab, CR or LF.
    pub extensions: BTreeMap<String, String>,
}

impl OAuthBearerToken {
    /// A token with a lifetime and no extensions.
    pub fn new(value: impl Into<String>, lifetime: Option<Duration>) -> Self {
        OAuthBearerToken {
            value: value.into(),
            lifetime,
            extensions: BTreeMap::new(),
        }
    }

    /// Adds a SASL extension.
    pub fn with_extension(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.insert(key.into(), value.into());
        self
    }

    /// The client's initial response (RFC 7628 §3.1), after checking that the token and the
    /// extensions cannot break its framing: a `\x01` in either would let one forge fields.
    pub(crate) fn initial_response(&self) -> Result<Vec<u8>, String> {
        if !is_b64token(&self.value) {
            return Err(
                "the token is not an RFC 6750 b64token (letters, digits, -._~+/, then =)"
                    .to_owned(),
            );
        }
        let mut message = format!("n,,\x01auth=Bearer {}", self.value);
        for (key, value) in &self.extensions {
            // Kafka's OAuthBearerClientInitialResponse: KEY_PATTERN and VALUE_PATTERN, and `auth`
            // reserved for the token itself.
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) || key == "auth" {
                return Err(format!(
                    "SASL extension key {key:?}: letters only, and not \"auth\""
                ));
            }
            if !value
                .bytes()
                .all(|b| matches!(b, 0x21..=0x7e | b' ' | b'\t' | b'\r' | b'\n'))
            {
                return Err(format!(
                    "SASL extension {key}: the value may hold printable ASCII, space, tab, CR \
                     and LF only"
                ));
            }
            message.push_str(&format!("\x01{key}={value}"));
        }
        message.push_str("\x01\x01");
        Ok(message.into_bytes())
    }
}

impl fmt::Debug for OAuthBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a credential: never in logs.
        f.debug_struct("OAuthBearerToken")
            .field("value", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("extensions", &self.extensions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A shared [`OAuthBearerTokenProvider`], as [`PoolConfig`](crate::PoolConfig) holds it.
///
/// Two handles are equal when they share the same provider.
#[derive(Clone)]
pub struct TokenProvider(Arc<dyn OAuthBearerTokenProvider>);

impl TokenProvider {
    /// Wraps `provider`.
    pub fn new(provider: impl OAuthBearerTokenProvider) -> Self {
        TokenProvider(Arc::new(provider))
    }

    pub(crate) fn token(&self) -> TokenFuture<'_> {
        self.0.token()
    }
}

impl PartialEq for TokenProvider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TokenProvider {}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider(..)")
    }
}

/// The initial response sent; waits for the outcome.
pub(crate) struct OAuthBearerSent;

/// The server refused with an error document; `\x01` sent, waiting for the failure.
pub(crate) struct OAuthBearerRefused {
    /// The server's error document (JSON, RFC 7628 §3.2.2).
    pub(crate) error: String,
}

impl SaslClient for OAuthBearerSent {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        if challenge.is_empty() {
            return Ok(Reply::Done);
        }
        let error = String::from_utf8_lossy(challenge).into_owned();
        Ok(Reply::Send(
            vec![0x01],
            Box::new(OAuthBearerRefused { error }),
        ))
    }
}

impl SaslClient for OAuthBearerRefused {
    fn receive(self: Box<Self>, _challenge: &[u8]) -> Result<Reply, SaslFailure> {
        // The server should fail the exchange now; if it says anything else, it still refused.
        Err(SaslFailure::Refused(self.error))
    }

    fn refusal(&self) -> Option<&str> {
        Some(&self.error)
    }
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_response_carries_the_token_and_the_extensions_in_order() {
        let token = OAuthBearerToken::new("eyJh.eyJz.c2ln", None)
            .with_extension("traceId", "abc 123")
            .with_extension("logicalCluster", "lkc-1");
        assert_eq!(
            token.initial_response().unwrap(),
            b"n,,\x01auth=Bearer eyJh.eyJz.c2ln\x01logicalCluster=lkc-1\x01traceId=abc 123\x01\x01"
        );
    }

    #[test]
    fn tokens_and_extensions_that_would_break_the_framing_are_refused() {
        for bad in ["", "a\x01b", "tok en", "=="] {
            assert!(
                OAuthBearerToken::new(bad, None).initial_response().is_err(),
                "{bad:?}"
            );
        }
        for (k, v) in [("auth", "x"), ("a1", "x"), ("", "x"), ("k", "a\x01b")] {
            let t = OAuthBearerToken::new("t", None).with_extension(k, v);
            assert!(t.initial_response().is_err(), "{k:?}={v:?}");
        }
    }

    #[test]
    fn an_error_document_is_answered_with_a_single_separator() {
        let Ok(Reply::Send(reply, next)) =
            Box::new(OAuthBearerSent).receive(b"{\"status\":\"invalid_token\"}")
        else {
            panic!("expected the %x01 answer");
        };
        assert_eq!(reply, [1]);
        assert_eq!(next.refusal(), Some("{\"status\":\"invalid_token\"}"));
        assert!(matches!(
            Box::new(OAuthBearerSent).receive(b""),
            Ok(Reply::Done)
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let t = OAuthBearerToken::new("secret-token", None);
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}
