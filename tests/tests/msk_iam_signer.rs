//! AWS MSK IAM tokens (`sasl.oauthbearer.method=aws_msk_iam`) against AWS's own signer: for the
//! same credentials, region and signing time, kcon's token and the one
//! aws-msk-iam-sasl-signer-python 1.0.2 makes (`tests/py/msk_sign.py`, botocore's SigV4 with its
//! clock set) are the same presigned URL: host, path and every query parameter but the
//! `User-Agent` each adds for itself, the signature among them, byte for byte. Long-term keys,
//! session credentials, an assumed role's credentials (AWS's signer assuming the role itself at
//! a stand-in of STS), and regions and times that change the signing key.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kcon_pool::{MSK_IAM_TOKEN_LIFETIME, msk_iam_token};
use kcon_tests::aws::sts;
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

/// An assumed role's: AWS's signer assumes the role itself (its `generate_auth_token_from_role_arn`,
/// STS a stand-in answering its AssumeRole with fixed credentials); kcon signs with the same
/// credentials at the same time, and the tokens are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assumed_roles_token_is_the_one_awss_signer_makes() {
    let sts = sts(
        "AssumeRole",
        "ASIAROLEEXAMPLE",
        "role/secret+key",
        "role-session/token+=",
    )
    .await;
    let time = 1_795_777_200;
    let request = json!({"cases": [{
        "access_key": "AKIABASEEXAMPLE", "secret_key": "base-secret", "session_token": null,
        "region": "eu-central-1", "time": time,
        "role_arn": "arn:aws:iam::123456789012:role/msk", "sts": sts.url,
    }]});
    let answer = tokio::task::spawn_blocking(move || peers::run("msk_sign.py", &request))
        .await
        .unwrap();
    assert_eq!(
        sts.requests().len(),
        1,
        "AWS's signer assumed the role at the stand-in"
    );
    let theirs = answer["tokens"][0]["token"].as_str().expect("a token");
    let credentials = aws_credential_types::Credentials::new(
        "ASIAROLEEXAMPLE",
        "role/secret+key",
        Some("role-session/token+=".to_owned()),
        None,
        "test",
    );
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(time);
    let ours = msk_iam_token(&credentials, "eu-central-1", at).unwrap();
    let (our_base, mut our_params) = parts(&ours.value);
    let (their_base, mut their_params) = parts(theirs);
    assert_eq!(our_base, their_base);
    for params in [&mut our_params, &mut their_params] {
        params.retain(|(k, _)| k != "User-Agent");
        params.sort();
    }
    assert_eq!(our_params, their_params);
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
