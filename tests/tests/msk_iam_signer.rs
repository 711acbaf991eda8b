//! AWS MSK IAM tokens (`sasl.oauthbearer.method=aws_msk_iam`) against AWS's own signer: for the
//! same credentials, region and signing time, kcon's token and the one
//! aws-msk-iam-sasl-signer-python 1.0.2 makes (`tests/py/msk_sign.py`, botocore's SigV4 with its
//! clock set) are the same presigned URL: host, path and every query parameter but the
//! `User-Agent` each adds for itself, the signature among them, byte for byte. Long-term keys,
//! session credentials (an assumed role's are such: a key, a secret and a session token), and
//! regions and times that change the signing key.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kcon_pool::{MSK_IAM_TOKEN_LIFETIME, msk_iam_token};
use kcon_tests::peers;
use serde_json::json;

/// A case: access key, secret, session token, region, signing time (seconds since the epoch).
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    u64,
);

const CASES: &[Case] = &[
    // Long-term keys.
    (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        "us-east-1",
        1_795_773_600,
    ),
    (
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        "eu-west-1",
        1_795_859_999,
    ),
    // Session credentials, as STS's AssumeRole and AssumeRoleWithWebIdentity give them: the
    // token holds characters that must be encoded (/, +, =).
    (
        "ASIAIOSFODNN7EXAMPLE",
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEHcaCXVzLWVhc3QtMSJHMEUCIQD+session/token+with=padding=="),
        "ap-southeast-2",
        1_767_225_600,
    ),
];

/// A URL taken apart: everything before the query, and the query's parameters in order, as
/// written (still percent-encoded).
fn parts(token: &str) -> (String, Vec<(String, String)>) {
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(token).expect("unpadded base64url"))
        .expect("a URL");
    let (base, query) = url.split_once('?').expect("a query");
    let params = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=value");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (base.to_owned(), params)
}

#[test]
fn kcons_tokens_are_the_ones_awss_signer_makes() {
    let request = json!({"cases": CASES.iter().map(|(key, secret, session, region, time)| json!({
        "access_key": key, "secret_key": secret, "session_token": session,
        "region": region, "time": time,
    })).collect::<Vec<_>>()});
    let answer = peers::run("msk_sign.py", &request);
    let theirs = answer["tokens"].as_array().expect("tokens");
    assert_eq!(theirs.len(), CASES.len());
    for ((key, secret, session, region, time), their) in CASES.iter().zip(theirs) {
        let credentials = aws_credential_types::Credentials::new(
            *key,
            *secret,
            session.map(str::to_owned),
            None,
            "test",
        );
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(*time);
        let ours = msk_iam_token(&credentials, region, at).unwrap();
        let (our_base, mut our_params) = parts(&ours.value);
        let (their_base, mut their_params) =
            parts(their["token"].as_str().expect("a token string"));
        assert_eq!(our_base, their_base);
        assert_eq!(our_base, format!("https://kafka.{region}.amazonaws.com/"));
        // Each names itself; nothing else may differ.
        for params in [&mut our_params, &mut their_params] {
            let agents = params.iter().filter(|(k, _)| k == "User-Agent").count();
            assert_eq!(agents, 1, "{params:?}");
            params.retain(|(k, _)| k != "User-Agent");
            params.sort();
        }
        assert_eq!(our_params, their_params, "{key} in {region} at {time}");
        assert_eq!(
            our_params.iter().any(|(k, _)| k == "X-Amz-Security-Token"),
            session.is_some()
        );
        // The same expiry: signing time plus 900 s.
        let their_expiry = Duration::from_millis(their["expiry_ms"].as_u64().expect("expiry_ms"));
        assert_eq!(
            ours.expires_at,
            SystemTime::UNIX_EPOCH + their_expiry,
            "{key} in {region} at {time}"
        );
        assert_eq!(ours.expires_at, at + MSK_IAM_TOKEN_LIFETIME);
    }
}
