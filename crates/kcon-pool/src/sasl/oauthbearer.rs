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
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;

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

/// `sasl.oauthbearer.config`: the unsecured JWT to log in with, as librdkafka builds it from
/// the same property (with `enable.sasl.oauthbearer.unsecure.jwt=true`) and as Kafka's
/// unsecured validator (`OAuthBearerUnsecuredValidatorCallbackHandler`) takes it: the header
/// `{"alg":"none"}`, claims naming the principal, when the token was issued and when it
/// expires, and the scope, no signature. For development and tests: anyone can make one.
///
/// A fresh token is made at each authentication and re-authentication, valid for `life` from
/// then on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnsecuredJwt {
    /// `principal=`: the principal the token names; required.
    pub principal: String,
    /// `principalClaimName=`: the claim that names it. Default `sub`.
    pub principal_claim_name: String,
    /// `scope=`: the scope, comma-separated in the property (empty items dropped, each kept
    /// once); no scope claim when empty.
    pub scope: Vec<String>,
    /// `scopeClaimName=`: the claim that holds the scope. Default `scope`.
    pub scope_claim_name: String,
    /// `lifeSeconds=`: how long a token is valid. Default 3600 s.
    pub life: Duration,
    /// `extension_KEY=VALUE`: SASL extensions (KIP-342) sent with the token.
    pub extensions: BTreeMap<String, String>,
}

/// What `sasl.oauthbearer.config` allows, in words.
pub(crate) const UNSECURED_JWT_ALLOWED: &str = "space-separated KEY=VALUE items: principal=NAME \
     (required), principalClaimName=CLAIM (default sub), scope=A,B,... , scopeClaimName=CLAIM \
     (default scope), lifeSeconds=N (1 to 2147483647, default 3600), extension_KEY=VALUE (KEY \
     letters only); empty unsets it";

impl UnsecuredJwt {
    /// Reads `sasl.oauthbearer.config`'s value; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<UnsecuredJwt, String> {
        let mut principal = None;
        let mut principal_claim_name = None;
        let mut scope = None;
        let mut scope_claim_name = None;
        let mut life = None;
        let mut extensions = BTreeMap::new();
        for item in text.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not KEY=VALUE"))?;
            if value.is_empty() {
                return Err(format!("{key} is empty"));
            }
            let slot = match key {
                "principal" => &mut principal,
                "principalClaimName" => &mut principal_claim_name,
                "scope" => &mut scope,
                "scopeClaimName" => &mut scope_claim_name,
                "lifeSeconds" => &mut life,
                _ => {
                    let Some(name) = key.strip_prefix("extension_") else {
                        return Err(format!("{key} is not a key it takes"));
                    };
                    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
                        return Err(format!("extension key {name:?}: letters only (KIP-342)"));
                    }
                    if name == "auth" {
                        return Err("extension_auth: \"auth\" is the token's own".to_owned());
                    }
                    if extensions
                        .insert(name.to_owned(), value.to_owned())
                        .is_some()
                    {
                        return Err(format!("{key} is given twice"));
                    }
                    continue;
                }
            };
            if slot.replace(value.to_owned()).is_some() {
                return Err(format!("{key} is given twice"));
            }
        }
        let principal = principal.ok_or("principal=NAME is missing")?;
        let life = match life {
            None => Duration::from_secs(3600),
            Some(n) => match n.parse::<u32>() {
                Ok(s) if (1..=i32::MAX as u32).contains(&s) => Duration::from_secs(u64::from(s)),
                _ => {
                    return Err(format!(
                        "lifeSeconds={n}: a whole number from 1 to 2147483647"
                    ));
                }
            },
        };
        let mut items: Vec<String> = Vec::new();
        for s in scope
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
        {
            if !items.iter().any(|i| i == s) {
                items.push(s.to_owned());
            }
        }
        Ok(UnsecuredJwt {
            principal,
            principal_claim_name: principal_claim_name.unwrap_or_else(|| "sub".to_owned()),
            scope: items,
            scope_claim_name: scope_claim_name.unwrap_or_else(|| "scope".to_owned()),
            life,
            extensions,
        })
    }

    /// A token issued at `now` (wall clock).
    pub fn token(&self, now: SystemTime) -> OAuthBearerToken {
        let issued = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        let expires = issued + self.life.as_millis() as u64;
        // NumericDate (RFC 7519): seconds since the epoch, here with milliseconds.
        let seconds = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
        let mut claims = format!(
            "{{{}:{},\"iat\":{},\"exp\":{}",
            json_string(&self.principal_claim_name),
            json_string(&self.principal),
            seconds(issued),
            seconds(expires)
        );
        if !self.scope.is_empty() {
            let items: Vec<String> = self.scope.iter().map(|s| json_string(s)).collect();
            claims.push_str(&format!(
                ",{}:[{}]",
                json_string(&self.scope_claim_name),
                items.join(",")
            ));
        }
        claims.push('}');
        let value = format!(
            "{}.{}.",
            BASE64_URL.encode(br#"{"alg":"none"}"#),
            BASE64_URL.encode(claims)
        );
        let mut token = OAuthBearerToken::new(value, Some(self.life));
        token.extensions = self.extensions.clone();
        token
    }
}

/// The config as `sasl.oauthbearer.config` would say it, defaults left out.
impl fmt::Display for UnsecuredJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "principal={}", self.principal)?;
        if self.principal_claim_name != "sub" {
            write!(f, " principalClaimName={}", self.principal_claim_name)?;
        }
        if !self.scope.is_empty() {
            write!(f, " scope={}", self.scope.join(","))?;
        }
        if self.scope_claim_name != "scope" {
            write!(f, " scopeClaimName={}", self.scope_claim_name)?;
        }
        if self.life != Duration::from_secs(3600) {
            write!(f, " lifeSeconds={}", self.life.as_secs())?;
        }
        for (key, value) in &self.extensions {
            write!(f, " extension_{key}={value}")?;
        }
        Ok(())
    }
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Makes a fresh [`UnsecuredJwt`] token at each authentication.
struct UnsecuredJwtProvider(UnsecuredJwt);

impl OAuthBearerTokenProvider for UnsecuredJwtProvider {
    fn token(&self) -> TokenFuture<'_> {
        let token = self.0.token(SystemTime::now());
        Box::pin(std::future::ready(Ok(token)))
    }
}

/// `sasl.oauthbearer.token.file`: reads the token from the file at each authentication, so
/// that whatever renews the file (a sidecar, a cron job) renews the logins too.
struct TokenFile(PathBuf);

/// How often, and how far apart, an empty token file is read again before the login fails: a
/// renewer that truncates the file and then writes it (a shell's `>`, most libraries' "write
/// a file") leaves it empty for a moment.
const EMPTY_FILE_READS: u32 = 10;
const EMPTY_FILE_PAUSE: Duration = Duration::from_millis(20);

impl OAuthBearerTokenProvider for TokenFile {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let mut reads = 0;
            let text = loop {
                let path = self.0.clone();
                let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path))
                    .await
                    .map_err(|e| format!("reading sasl.oauthbearer.token.file stopped: {e}"))?;
                let text = read.map_err(|e| {
                    format!(
                        "cannot read sasl.oauthbearer.token.file {}: {e}",
                        self.0.display()
                    )
                })?;
                reads += 1;
                if !text.trim().is_empty() || reads == EMPTY_FILE_READS {
                    break text;
                }
                tokio::time::sleep(EMPTY_FILE_PAUSE).await;
            };
            let token = text.trim();
            if token.is_empty() {
                return Err(
                    format!("sasl.oauthbearer.token.file {} is empty", self.0.display()).into(),
                );
            }
            // The broker bounds the session by the token's expiry when it re-authenticates
            // sessions (KIP-368), and says so in the session lifetime it answers.
            Ok(OAuthBearerToken::new(token, None))
        })
    }
}

impl TokenProvider {
    /// Tokens made from `sasl.oauthbearer.config` at each authentication.
    pub(crate) fn unsecured(config: UnsecuredJwt) -> TokenProvider {
        TokenProvider::new(UnsecuredJwtProvider(config))
    }

    /// Tokens read from `path` at each authentication.
    pub(crate) fn file(path: PathBuf) -> TokenProvider {
        TokenProvider::new(TokenFile(path))
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

    #[tokio::test]
    async fn a_token_file_being_rewritten_is_read_once_it_is_written_and_an_empty_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.jwt");
        // Truncated, as a renewer leaves it between its truncate and its write.
        std::fs::write(&path, "").unwrap();
        let provider = TokenProvider::file(path.clone());
        let writer = {
            let path = path.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                std::fs::write(&path, "a.b.c\n").unwrap();
            })
        };
        let token = provider.token().await.unwrap();
        assert_eq!(token.value, "a.b.c");
        writer.await.unwrap();
        // Empty for good: the login fails, saying so.
        std::fs::write(&path, "  \n").unwrap();
        let e = provider.token().await.unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
    }

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
    fn the_unsecured_jwt_config_reads_librdkafkas_syntax() {
        let c = UnsecuredJwt::parse(
            " principal=alice  scope=read,,write,read lifeSeconds=60 \
             extension_traceId=abc principalClaimName=user scopeClaimName=scp ",
        )
        .unwrap();
        assert_eq!(c.principal, "alice");
        assert_eq!(c.principal_claim_name, "user");
        assert_eq!(c.scope, ["read", "write"]);
        assert_eq!(c.scope_claim_name, "scp");
        assert_eq!(c.life, Duration::from_secs(60));
        assert_eq!(c.extensions["traceId"], "abc");
        assert_eq!(
            c.to_string(),
            "principal=alice principalClaimName=user scope=read,write scopeClaimName=scp \
             lifeSeconds=60 extension_traceId=abc"
        );
        assert_eq!(UnsecuredJwt::parse(&c.to_string()).unwrap(), c);
        let d = UnsecuredJwt::parse("principal=bob").unwrap();
        assert_eq!(
            (d.principal_claim_name.as_str(), d.scope_claim_name.as_str()),
            ("sub", "scope")
        );
        assert_eq!((d.life, d.scope.len()), (Duration::from_secs(3600), 0));
        for (bad, why) in [
            ("", "principal=NAME is missing"),
            ("scope=a", "principal=NAME is missing"),
            ("principal", "is not KEY=VALUE"),
            ("principal=", "principal is empty"),
            ("principal=a principal=b", "principal is given twice"),
            ("principal=a lifeSeconds=0", "lifeSeconds=0"),
            (
                "principal=a lifeSeconds=2147483648",
                "lifeSeconds=2147483648",
            ),
            ("principal=a colour=blue", "colour is not a key it takes"),
            ("principal=a extension_auth=x", "the token's own"),
            ("principal=a extension_a1=x", "letters only"),
        ] {
            let e = UnsecuredJwt::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn an_unsecured_jwt_is_unsigned_and_claims_what_the_config_says() {
        let c = UnsecuredJwt::parse("principal=al\"ice scope=a,b lifeSeconds=60 extension_x=y")
            .unwrap();
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let token = c.token(now);
        assert_eq!(token.lifetime, Some(Duration::from_secs(60)));
        assert_eq!(token.extensions["x"], "y");
        let parts: Vec<&str> = token.value.split('.').collect();
        assert_eq!(parts.len(), 3, "{}", token.value);
        assert_eq!(parts[2], "", "no signature");
        let decode = |p: &str| String::from_utf8(BASE64_URL.decode(p).unwrap()).unwrap();
        assert_eq!(decode(parts[0]), r#"{"alg":"none"}"#);
        assert_eq!(
            decode(parts[1]),
            r#"{"sub":"al\"ice","iat":1700000000.250,"exp":1700000060.250,"scope":["a","b"]}"#
        );
        assert!(token.initial_response().is_ok(), "a b64token");
    }

    #[test]
    fn debug_hides_the_token() {
        let t = OAuthBearerToken::new("secret-token", None);
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}
