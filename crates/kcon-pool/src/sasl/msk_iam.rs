//! AWS MSK IAM: OAUTHBEARER tokens for Amazon MSK's IAM access control
//! (`sasl.oauthbearer.method=aws_msk_iam`; the feature `aws-msk-iam`).
//!
//! The token is what AWS's MSK IAM SASL signers (Python, Go, JavaScript, .NET) hand a Kafka
//! client for OAUTHBEARER: the URL `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`
//! presigned with SigV4 for the service `kafka-cluster` (its `X-Amz-*` query parameters, valid
//! 900 s), a `User-Agent` parameter added after signing, all encoded as unpadded base64url.
//! Signing is AWS's own SigV4 signer (aws-sigv4); the credentials come from AWS's credential
//! chain (aws-config: environment, profile files, web identity, the ECS container endpoint, EC2
//! instance metadata), as AWS's SDKs find them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::oauthbearer::{BoxError, OAuthBearerToken, OAuthBearerTokenProvider, TokenFuture};

/// How long a token is valid: the presigned request's `X-Amz-Expires`, as AWS's signers set it.
pub const MSK_IAM_TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The service the request is signed for.
const SIGNING_NAME: &str = "kafka-cluster";

/// The `User-Agent` parameter added to the signed URL (not signed): who made the token.
const USER_AGENT: &str = concat!("kcon/", env!("CARGO_PKG_VERSION"));

/// Credentials with less than this left are fetched again before a token is signed with them,
/// so that a token never outlives them by much.
const CREDENTIALS_AT_LEAST: Duration = Duration::from_secs(300);

/// While the chain fails, the credentials held keep signing while they have this much left.
const CREDENTIALS_STILL_USED: Duration = Duration::from_secs(30);

/// An MSK IAM token, and when it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct MskIamToken {
    /// The token: the signed URL in unpadded base64url.
    pub value: String,
    /// When the broker stops taking it: the signing time plus [`MSK_IAM_TOKEN_LIFETIME`].
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for MskIamToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a credential for 15 minutes: never in logs.
        f.debug_struct("MskIamToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The MSK IAM token for `credentials` in `region`, signed as at `time`: what AWS's MSK IAM
/// signers make for the same credentials, region and time, but for the `User-Agent` they add.
pub fn msk_iam_token(
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<MskIamToken, String> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(format!("{region:?} is not an AWS region"));
    }
    let host = format!("kafka.{region}.amazonaws.com");
    let url = format!("https://{host}/?Action=kafka-cluster%3AConnect");
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(MSK_IAM_TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4 signing parameters: {e}"))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        [("host", host.as_str())].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| format!("the request to sign: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("SigV4: {e}"))?
        .into_parts();
    let mut signed = url;
    for (name, value) in instructions.params() {
        signed.push('&');
        signed.push_str(name);
        signed.push('=');
        signed.push_str(&uri_encode(value));
    }
    signed.push_str("&User-Agent=");
    signed.push_str(&uri_encode(USER_AGENT));
    Ok(MskIamToken {
        value: URL_SAFE_NO_PAD.encode(signed),
        expires_at: time + MSK_IAM_TOKEN_LIFETIME,
    })
}

/// SigV4's URI encoding of a query value: unreserved characters (`A-Z a-z 0-9 - _ . ~`) kept,
/// every other byte `%XX` in upper case.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The region in MSK's broker host names (`b-1.orders.abc123.c2.kafka.eu-west-1.amazonaws.com`,
/// `boot-x.c1.kafka-serverless.us-east-1.amazonaws.com`), from the first of `hosts` that is one.
pub(crate) fn region_from_hosts<'a>(hosts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    hosts.into_iter().find_map(|host| {
        let host = host.to_ascii_lowercase();
        let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
        labels.windows(4).find_map(|w| {
            (matches!(w[0], "kafka" | "kafka-serverless")
                && w[2] == "amazonaws"
                && w[3] == "com"
                && !w[1].is_empty()
                && w[1].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .then(|| w[1].to_owned())
        })
    })
}

/// The settings of `sasl.oauthbearer.method=aws_msk_iam`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MskIamSettings {
    /// `sasl.aws.region`, else the region in the bootstrap servers' host names; `None`: the
    /// credential chain's region.
    pub(crate) region: Option<String>,
    /// `sasl.aws.profile`; `None`: `AWS_PROFILE`, else `default`.
    pub(crate) profile: Option<String>,
    /// `sasl.aws.role.arn`: a role assumed with the chain's credentials.
    pub(crate) role_arn: Option<String>,
    /// `sasl.aws.role.session.name`.
    pub(crate) role_session_name: Option<String>,
}

/// The token provider of `aws_msk_iam`: AWS's credential chain, loaded at the first token,
/// its credentials kept while they have more than [`CREDENTIALS_AT_LEAST`] left, and a token
/// signed afresh for every login.
pub(crate) struct MskIam {
    settings: MskIamSettings,
    chain: OnceCell<Result<Chain, String>>,
    held: Mutex<Option<Credentials>>,
    /// Whether the chain failed last time: its failure is reported once, its recovery once.
    failing: AtomicBool,
}

#[derive(Clone)]
struct Chain {
    region: String,
    credentials: SharedCredentialsProvider,
}

impl MskIam {
    pub(crate) fn new(settings: MskIamSettings) -> MskIam {
        MskIam {
            settings,
            chain: OnceCell::new(),
            held: Mutex::new(None),
            failing: AtomicBool::new(false),
        }
    }

    async fn load(&self) -> Result<Chain, String> {
        let client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(client);
        if let Some(region) = &self.settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &self.settings.profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let region = config.region().map(ToString::to_string).ok_or(
            "no AWS region: set sasl.aws.region, or AWS_REGION, or a region in the AWS profile",
        )?;
        let mut credentials = config
            .credentials_provider()
            .ok_or("AWS's credential chain is missing")?;
        if let Some(role) = &self.settings.role_arn {
            let mut assume = aws_config::sts::AssumeRoleProvider::builder(role).configure(&config);
            if let Some(name) = &self.settings.role_session_name {
                assume = assume.session_name(name);
            }
            credentials = SharedCredentialsProvider::new(assume.build().await);
        }
        Ok(Chain {
            region,
            credentials,
        })
    }

    async fn credentials(&self, chain: &Chain, now: SystemTime) -> Result<Credentials, String> {
        let fresh = |c: &Credentials| {
            c.expiry().is_none_or(|expiry| {
                expiry
                    .duration_since(now)
                    .is_ok_and(|left| left > CREDENTIALS_AT_LEAST)
            })
        };
        if let Some(held) = self.held.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
            && fresh(held)
        {
            return Ok(held.clone());
        }
        match chain.credentials.provide_credentials().await {
            Ok(credentials) => {
                *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(credentials.clone());
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!("AWS's credential chain gives credentials again");
                }
                Ok(credentials)
            }
            Err(e) => {
                let why = format!("AWS credentials: {}", error_chain(&e));
                // Credentials that have not expired yet keep signing while the chain fails
                // (an instance metadata service restarting, STS throttling): said once.
                let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let usable = held.filter(|c| {
                    c.expiry().is_none_or(|expiry| {
                        expiry
                            .duration_since(now)
                            .is_ok_and(|left| left > CREDENTIALS_STILL_USED)
                    })
                });
                if !self.failing.swap(true, Ordering::Relaxed) {
                    warn!(
                        error = %why,
                        using_held = usable.is_some(),
                        "AWS's credential chain fails; tokens are signed with the credentials \
                         held until they expire"
                    );
                }
                usable.ok_or(why)
            }
        }
    }

    async fn token(&self) -> Result<OAuthBearerToken, String> {
        let chain = self.chain.get_or_init(|| self.load()).await.clone()?;
        let now = SystemTime::now();
        let credentials = self.credentials(&chain, now).await?;
        let token = msk_iam_token(&credentials, &chain.region, now)?;
        let mut lifetime = MSK_IAM_TOKEN_LIFETIME;
        if let Some(expiry) = credentials.expiry() {
            lifetime = lifetime.min(expiry.duration_since(now).unwrap_or(Duration::ZERO));
        }
        Ok(OAuthBearerToken::new(token.value, Some(lifetime)))
    }
}

impl OAuthBearerTokenProvider for MskIam {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move { self.token().await.map_err(BoxError::from) })
    }
}

/// An error and its sources, joined: AWS's errors say little at the top.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(token: &MskIamToken) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(&token.value).unwrap()).unwrap()
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let (_, q) = url.split_once('?').unwrap();
        q.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_token_is_the_presigned_connect_request_in_base64url() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        // 2026-11-27T10:00:00Z.
        let token = msk_iam_token(&credentials, "eu-west-1", at(1_795_773_600)).unwrap();
        assert!(!token.value.contains(['=', '+', '/']), "{}", token.value);
        assert_eq!(token.expires_at, at(1_795_773_600 + 900));
        let url = decoded(&token);
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            ),
            "{url}"
        );
        let q = query(&url);
        let get = |k: &str| {
            q.iter()
                .find(|(name, _)| name == k)
                .unwrap_or_else(|| panic!("no {k} in {url}"))
                .1
                .clone()
        };
        assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
        assert_eq!(
            get("X-Amz-Credential"),
            "AKIDEXAMPLE%2F20261127%2Feu-west-1%2Fkafka-cluster%2Faws4_request"
        );
        assert_eq!(get("X-Amz-Date"), "20261127T100000Z");
        assert_eq!(get("X-Amz-Expires"), "900");
        assert_eq!(get("X-Amz-SignedHeaders"), "host");
        assert_eq!(get("X-Amz-Signature").len(), 64);
        assert_eq!(get("User-Agent"), uri_encode(USER_AGENT));
        assert!(q.iter().all(|(k, _)| k != "X-Amz-Security-Token"));
        // Deterministic: the same inputs sign the same; another secret, another signature.
        assert_eq!(
            msk_iam_token(&credentials, "eu-west-1", at(1_795_773_600)).unwrap(),
            token
        );
        let other = Credentials::new("AKIDEXAMPLE", "other", None, None, "test");
        assert_ne!(
            msk_iam_token(&other, "eu-west-1", at(1_795_773_600)).unwrap(),
            token
        );
    }

    #[test]
    fn session_credentials_carry_their_token_inside_the_signature() {
        let credentials = Credentials::new(
            "ASIAEXAMPLE",
            "secret",
            Some("the/session+token=".into()),
            None,
            "t",
        );
        let url = decoded(&msk_iam_token(&credentials, "us-east-1", at(1_795_773_600)).unwrap());
        let q = query(&url);
        assert!(
            q.contains(&(
                "X-Amz-Security-Token".to_owned(),
                "the%2Fsession%2Btoken%3D".to_owned()
            )),
            "{url}"
        );
    }

    #[test]
    fn a_region_that_cannot_be_one_is_refused() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        for region in ["", "eu-west-1/..", "eu west"] {
            assert!(msk_iam_token(&credentials, region, SystemTime::now()).is_err());
        }
    }

    /// A credential provider answering from a script, once per call.
    #[derive(Debug)]
    struct Scripted(Mutex<std::collections::VecDeque<Option<Credentials>>>);

    impl ProvideCredentials for Scripted {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let next = self.0.lock().unwrap().pop_front().flatten();
            aws_credential_types::provider::future::ProvideCredentials::ready(next.ok_or_else(
                || aws_credential_types::provider::error::CredentialsError::not_loaded("down"),
            ))
        }
    }

    #[tokio::test]
    async fn held_credentials_keep_signing_while_the_chain_fails_until_they_expire() {
        let now = SystemTime::now();
        // Four minutes left: not fresh enough to keep without asking, still good to sign.
        let soon = Credentials::new(
            "ASIAHELD",
            "s",
            Some("t".into()),
            Some(now + Duration::from_secs(240)),
            "test",
        );
        let renewed = Credentials::new("ASIANEW", "s", None, None, "test");
        let msk = MskIam::new(MskIamSettings::default());
        let chain = Chain {
            region: "eu-west-1".to_owned(),
            credentials: SharedCredentialsProvider::new(Scripted(Mutex::new(
                [Some(soon.clone()), None, None, Some(renewed.clone())].into(),
            ))),
        };
        assert_eq!(msk.credentials(&chain, now).await.unwrap(), soon);
        // The chain fails: the held credentials sign, and the failure is marked once.
        assert_eq!(msk.credentials(&chain, now).await.unwrap(), soon);
        assert!(msk.failing.load(Ordering::Relaxed));
        // Past their expiry (less 30 s), the failure is the caller's.
        let late = now + Duration::from_secs(220);
        let e = msk.credentials(&chain, late).await.unwrap_err();
        assert!(e.starts_with("AWS credentials: "), "{e}");
        // The chain recovers.
        assert_eq!(msk.credentials(&chain, late).await.unwrap(), renewed);
        assert!(!msk.failing.load(Ordering::Relaxed));
    }

    #[test]
    fn the_region_is_read_from_msk_host_names() {
        assert_eq!(
            region_from_hosts(["b-1.orders.abc123.c2.kafka.eu-west-1.amazonaws.com"]),
            Some("eu-west-1".to_owned())
        );
        assert_eq!(
            region_from_hosts([
                "localhost",
                "boot-x1y2.c1.kafka-serverless.US-EAST-2.amazonaws.com",
            ]),
            Some("us-east-2".to_owned())
        );
        assert_eq!(region_from_hosts(["kafka.example.com", "127.0.0.1"]), None);
        assert_eq!(region_from_hosts(["b-1.kafka..amazonaws.com"]), None);
    }

    #[test]
    fn query_values_are_encoded_as_sigv4_says() {
        assert_eq!(uri_encode("a-Z_0.9~"), "a-Z_0.9~");
        assert_eq!(uri_encode("kcon/0.1 x:y"), "kcon%2F0.1%20x%3Ay");
    }
}
