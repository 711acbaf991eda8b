//! The JWT a client signs to ask a token endpoint for a token by the JWT bearer grant
//! (RFC 7523 §2.1; Kafka's KIP-1139): `sasl.oauthbearer.assertion.*`.
//!
//! The header is `{"alg":ALG,"typ":"JWT"}` and the claims `iat`, `exp`
//! (`sasl.oauthbearer.assertion.claim.exp.seconds` later), `nbf`
//! (`sasl.oauthbearer.assertion.claim.nbf.seconds` earlier), and `iss`, `sub`, `aud` and a
//! random `jti` when set; a template file (`{"header": {...}, "payload": {...}}`, the Java
//! client's format) adds fields of its own (a `kid`, a tenant claim), which the ones above
//! override. Signed with RS256 or ES256 by *ring*, from an unencrypted PEM key.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use kcon_core::ConfigError;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value};

/// `sasl.oauthbearer.assertion.algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: an RSA key.
    Rs256,
    /// ECDSA on P-256 with SHA-256: an EC key.
    Es256,
}

impl AssertionAlgorithm {
    /// Reads `RS256` or `ES256`, in any case.
    pub fn parse(s: &str) -> Option<AssertionAlgorithm> {
        if s.eq_ignore_ascii_case("RS256") {
            Some(AssertionAlgorithm::Rs256)
        } else if s.eq_ignore_ascii_case("ES256") {
            Some(AssertionAlgorithm::Es256)
        } else {
            None
        }
    }

    /// The JWS name.
    pub fn name(self) -> &'static str {
        match self {
            AssertionAlgorithm::Rs256 => "RS256",
            AssertionAlgorithm::Es256 => "ES256",
        }
    }
}

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// What the claims say, besides the times.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims {
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
    pub(crate) aud: Option<String>,
    /// `exp` this long after `iat`.
    pub(crate) exp: Duration,
    /// `nbf` this long before `iat`.
    pub(crate) nbf: Duration,
    pub(crate) jti: bool,
}

/// Signs assertions: the key, loaded once, and what goes into each.
pub(crate) struct Signer {
    algorithm: AssertionAlgorithm,
    key: Key,
    header: Map<String, Value>,
    payload: Map<String, Value>,
    claims: Claims,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("algorithm", &self.algorithm)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

const KEY: &str = "sasl.oauthbearer.assertion.private.key.file";
const TEMPLATE: &str = "sasl.oauthbearer.assertion.template.file";

impl Signer {
    /// Loads the key of `key_file` for `algorithm` and the template of `template_file`, if
    /// any; the error names the property and says what is wrong.
    pub(crate) fn load(
        algorithm: AssertionAlgorithm,
        key_file: &Path,
        template_file: Option<&Path>,
        claims: Claims,
    ) -> Result<Signer, ConfigError> {
        let shown = key_file.display().to_string();
        let der = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
            ConfigError::unusable(KEY, &shown, format!("no unencrypted PEM private key: {e}"))
        })?;
        let key = match (algorithm, &der) {
            (AssertionAlgorithm::Rs256, PrivateKeyDer::Pkcs8(k)) => {
                RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()).map(Key::Rsa)
            }
            (AssertionAlgorithm::Rs256, PrivateKeyDer::Pkcs1(k)) => {
                RsaKeyPair::from_der(k.secret_pkcs1_der()).map(Key::Rsa)
            }
            (AssertionAlgorithm::Es256, PrivateKeyDer::Pkcs8(k)) => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_pkcs8_der(),
                &SystemRandom::new(),
            )
            .map(Key::Ec),
            (algorithm, _) => {
                return Err(ConfigError::unusable(
                    KEY,
                    &shown,
                    format!(
                        "{} needs {}",
                        algorithm.name(),
                        match algorithm {
                            AssertionAlgorithm::Rs256 => "an RSA key (PKCS#8 or PKCS#1)",
                            AssertionAlgorithm::Es256 => "a P-256 key in PKCS#8",
                        }
                    ),
                ));
            }
        }
        .map_err(|e| {
            ConfigError::unusable(
                KEY,
                &shown,
                format!("not a key {} can sign with: {e}", algorithm.name()),
            )
        })?;
        let (header, payload) = match template_file {
            Some(path) => template(path)?,
            None => (Map::new(), Map::new()),
        };
        Ok(Signer {
            algorithm,
            key,
            header,
            payload,
            claims,
            rng: SystemRandom::new(),
        })
    }

    /// An assertion issued at `now`.
    pub(crate) fn assertion(&self, now: SystemTime) -> Result<String, String> {
        let mut header = self.header.clone();
        header.insert("alg".to_owned(), self.algorithm.name().into());
        header.insert("typ".to_owned(), "JWT".into());
        let mut payload = self.payload.clone();
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        payload.insert("iat".to_owned(), iat.into());
        payload.insert("exp".to_owned(), (iat + self.claims.exp.as_secs()).into());
        payload.insert(
            "nbf".to_owned(),
            iat.saturating_sub(self.claims.nbf.as_secs()).into(),
        );
        for (name, value) in [
            ("iss", &self.claims.iss),
            ("sub", &self.claims.sub),
            ("aud", &self.claims.aud),
        ] {
            if let Some(v) = value {
                payload.insert(name.to_owned(), v.clone().into());
            }
        }
        if self.claims.jti {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for jti: {e}"))?;
            let jti: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            payload.insert("jti".to_owned(), jti.into());
        }
        let signing_input = format!(
            "{}.{}",
            BASE64_URL.encode(Value::Object(header).to_string()),
            BASE64_URL.encode(Value::Object(payload).to_string())
        );
        let signature = match &self.key {
            Key::Rsa(key) => {
                let mut signature = vec![0u8; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .map_err(|e| format!("signing the assertion failed: {e}"))?;
                signature
            }
            Key::Ec(key) => key
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|e| format!("signing the assertion failed: {e}"))?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", BASE64_URL.encode(signature)))
    }
}

/// A JSON object's fields.
type Fields = Map<String, Value>;

/// The template file's `header` and `payload` objects (either may be left out).
fn template(path: &Path) -> Result<(Fields, Fields), ConfigError> {
    let shown = path.display().to_string();
    let bad = |why: String| ConfigError::unusable(TEMPLATE, &shown, why);
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Value::Object(mut parts) = value else {
        return Err(bad(
            "not a JSON object with \"header\" and \"payload\" objects".to_owned(),
        ));
    };
    let mut take = |name: &str| match parts.remove(name) {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(bad(format!("its \"{name}\" is not a JSON object"))),
    };
    let header = take("header")?;
    let payload = take("payload")?;
    Ok((header, payload))
}

#[cfg(test)]
mod tests {
    use ring::signature::KeyPair;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::*;

    /// An RSA key for these tests only (PKCS#1).
    const RSA_KEY: &str = include_str!("testdata/rsa-test-key.pem");

    fn claims() -> Claims {
        Claims {
            iss: Some("kcon-svc".to_owned()),
            sub: Some("billing".to_owned()),
            aud: Some("https://idp.example/oauth2/token".to_owned()),
            exp: Duration::from_secs(300),
            nbf: Duration::from_secs(60),
            jti: true,
        }
    }

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&BASE64_URL.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn an_rs256_assertion_carries_the_claims_and_verifies_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, RSA_KEY).unwrap();
        let template = dir.path().join("template.json");
        std::fs::write(
            &template,
            r#"{"header":{"kid":"key-1","alg":"none"},"payload":{"tenant":"t1","sub":"x"}}"#,
        )
        .unwrap();
        let signer =
            Signer::load(AssertionAlgorithm::Rs256, &key, Some(&template), claims()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let jwt = signer.assertion(now).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header = decode(parts[0]);
        assert_eq!(header["alg"], "RS256", "the template does not override alg");
        assert_eq!(
            (header["typ"].as_str(), header["kid"].as_str()),
            (Some("JWT"), Some("key-1"))
        );
        let payload = decode(parts[1]);
        assert_eq!(payload["iat"], 1_000_000);
        assert_eq!(payload["exp"], 1_000_300);
        assert_eq!(payload["nbf"], 999_940);
        assert_eq!(payload["iss"], "kcon-svc");
        assert_eq!(
            payload["sub"], "billing",
            "the properties override the template"
        );
        assert_eq!(payload["aud"], "https://idp.example/oauth2/token");
        assert_eq!(payload["tenant"], "t1");
        assert_eq!(payload["jti"].as_str().unwrap().len(), 32);
        assert_ne!(
            decode(signer.assertion(now).unwrap().split('.').nth(1).unwrap())["jti"],
            payload["jti"],
            "a fresh jti each time"
        );
        let Key::Rsa(pair) = &signer.key else {
            panic!("an RSA key")
        };
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &BASE64_URL.decode(parts[2]).unwrap())
            .expect("the signature verifies");
    }

    #[test]
    fn an_es256_assertion_verifies_with_the_public_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ec.pem");
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        std::fs::write(&key, pem).unwrap();
        let claims = Claims {
            jti: false,
            ..claims()
        };
        let signer = Signer::load(AssertionAlgorithm::Es256, &key, None, claims).unwrap();
        let jwt = signer.assertion(SystemTime::now()).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(decode(parts[0])["alg"], "ES256");
        assert!(decode(parts[1]).get("jti").is_none());
        let Key::Ec(pair) = &signer.key else {
            panic!("an EC key")
        };
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref());
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &BASE64_URL.decode(parts[2]).unwrap())
            .expect("the signature verifies");
    }

    #[test]
    fn keys_and_templates_that_cannot_serve_are_refused_naming_the_property() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = dir.path().join("rsa.pem");
        std::fs::write(&rsa, RSA_KEY).unwrap();
        let e = Signer::load(AssertionAlgorithm::Es256, &rsa, None, claims()).unwrap_err();
        assert_eq!(e.property(), KEY);
        assert!(e.to_string().contains("ES256 needs a P-256 key"), "{e}");
        let missing = dir.path().join("missing.pem");
        let e = Signer::load(AssertionAlgorithm::Rs256, &missing, None, claims()).unwrap_err();
        assert_eq!(e.property(), KEY);
        let template = dir.path().join("t.json");
        for (text, why) in [
            ("[1]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"header": 3}"#, "\"header\" is not a JSON object"),
        ] {
            std::fs::write(&template, text).unwrap();
            let e = Signer::load(AssertionAlgorithm::Rs256, &rsa, Some(&template), claims())
                .unwrap_err();
            assert_eq!(e.property(), TEMPLATE);
            assert!(e.to_string().contains(why), "{text}: {e}");
        }
    }
}
