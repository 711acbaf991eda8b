//! SCRAM (RFC 5802) with SHA-256 and SHA-512 (RFC 7677; Kafka's KIP-84), client side.
//!
//! Sans-IO and clock-free: the nonce is an argument, so the RFC's test vectors replay exactly.
//! Two states, each consumed by the message that ends it:
//! [`ScramClient`] (client-first sent) → server-first → [`ScramFinal`] (client-final sent) →
//! server-final → done. Generic over the hash, so the SHA-1 vector of RFC 5802 tests the same
//! code as the SHA-256 vector of RFC 7677.
//!
//! No SASLprep (RFC 4013) of the user name or password: Kafka's Java client and librdkafka
//! skip it too, so a non-ASCII password hashes to the same bytes as theirs.

use std::marker::PhantomData;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::digest::Digest;
use hmac::{EagerHash, Hmac, KeyInit, Mac};

use super::{Reply, SaslClient, SaslFailure};

/// The GS2 header (RFC 5802 §7): no channel binding, no authorization identity.
const GS2_HEADER: &str = "n,,";
/// `c=` of client-final: the GS2 header in base64 ("biws"), fixed since it never varies.
const CHANNEL_BINDING: &str = "biws";
/// Java's `ScramMechanism.minIterations()`: fewer iterations than this make the stored
/// credential too cheap to brute-force, and the Java client refuses them.
pub(crate) const MIN_ITERATIONS: u32 = 4096;
/// Kafka brokers store credentials with at most 16,384 iterations (`ScramMechanism`'s
/// maximum), so a larger count cannot come from a Kafka broker; ten times that bounds the CPU
/// a broken or hostile peer can make the client burn on PBKDF2 to some tens of milliseconds.
pub(crate) const MAX_ITERATIONS: u32 = 163_840;

/// Client-first sent; waits for server-first.
pub(crate) struct ScramClient<D> {
    password: Vec<u8>,
    client_nonce: String,
    /// `n=<user>,r=<nonce>`: part of the signed AuthMessage.
    client_first_bare: String,
    hash: PhantomData<D>,
}

/// Client-final sent; waits for the server's signature.
pub(crate) struct ScramFinal<D> {
    server_signature: Vec<u8>,
    hash: PhantomData<D>,
}

impl<D: EagerHash + Send + 'static> ScramClient<D> {
    /// Starts an exchange; returns the state and client-first. `nonce` must be fresh random
    /// printable ASCII without `,` (the caller draws it from the OS CSPRNG).
    pub(crate) fn start(username: &str, password: &str, nonce: String) -> (Self, Vec<u8>) {
        let client_first_bare = format!("n={},r={nonce}", sasl_name(username));
        let first = format!("{GS2_HEADER}{client_first_bare}").into_bytes();
        let client = ScramClient {
            password: password.as_bytes().to_vec(),
            client_nonce: nonce,
            client_first_bare,
            hash: PhantomData,
        };
        (client, first)
    }

    /// Reads server-first (`r=<nonce>,s=<salt>,i=<iterations>`), returns client-final with the
    /// proof, and the state that checks the server's signature.
    pub(crate) fn server_first(
        self,
        message: &[u8],
    ) -> Result<(ScramFinal<D>, Vec<u8>), SaslFailure> {
        let server_first =
            std::str::from_utf8(message).map_err(|_| malformed("server-first is not UTF-8"))?;
        let attrs = Attributes::parse(server_first)?;
        if attrs.first_key() == Some('m') {
            // RFC 5802 §5.1: a mandatory extension the client does not know ends the exchange.
            return Err(malformed(
                "server-first demands an extension (m=) that SCRAM clients cannot know",
            ));
        }
        let nonce = attrs
            .get('r')
            .ok_or_else(|| malformed("server-first has no nonce (r=)"))?;
        // The server's nonce extends ours (§5.1): otherwise this answers another exchange, or a
        // replay.
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(malformed("the server's nonce does not extend the client's"));
        }
        let salt = attrs
            .get('s')
            .ok_or_else(|| malformed("server-first has no salt (s=)"))?;
        let salt = BASE64
            .decode(salt)
            .map_err(|_| malformed("the salt (s=) is not base64"))?;
        let iterations: u32 = attrs
            .get('i')
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| malformed("server-first has no iteration count (i=)"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(SaslFailure::Protocol(format!(
                "the server asks for {iterations} PBKDF2 iterations; accepted: \
                 {MIN_ITERATIONS} to {MAX_ITERATIONS}"
            )));
        }

        let without_proof = format!("c={CHANNEL_BINDING},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = hi::<D>(&self.password, &salt, iterations);
        let client_key = hmac::<D>(&salted, b"Client Key");
        let stored_key = D::digest(&client_key).to_vec();
        let client_signature = hmac::<D>(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::<D>(&salted, b"Server Key");
        let server_signature = hmac::<D>(&server_key, auth_message.as_bytes());

        let client_final = format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes();
        let next = ScramFinal {
            server_signature,
            hash: PhantomData,
        };
        Ok((next, client_final))
    }
}

impl<D> ScramFinal<D> {
    /// Reads server-final: `v=<signature>` must be the signature only a holder of the
    /// credential can compute (mutual authentication, §9); `e=<error>` is a refusal.
    pub(crate) fn server_final(self, message: &[u8]) -> Result<(), SaslFailure> {
        let server_final =
            std::str::from_utf8(message).map_err(|_| malformed("server-final is not UTF-8"))?;
        let attrs = Attributes::parse(server_final)?;
        if let Some(error) = attrs.get('e') {
            return Err(SaslFailure::Refused(error.to_owned()));
        }
        let verifier = attrs.get('v').ok_or_else(|| {
            malformed("server-final has neither a verifier (v=) nor an error (e=)")
        })?;
        let verifier = BASE64
            .decode(verifier)
            .map_err(|_| malformed("the server's verifier (v=) is not base64"))?;
        // Not secret-dependent timing that matters here: the expected value is ours and the
        // exchange ends either way.
        if verifier != self.server_signature {
            return Err(SaslFailure::Protocol(
                "the server's signature is wrong: it does not hold this user's credential \
                 (a man in the middle, or a broker configured with another password)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

impl<D: EagerHash + Send + 'static> SaslClient for ScramClient<D> {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        let (next, client_final) = self.server_first(challenge)?;
        Ok(Reply::Send(client_final, Box::new(next)))
    }
}

impl<D: Send + 'static> SaslClient for ScramFinal<D> {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        self.server_final(challenge)?;
        Ok(Reply::Done)
    }
}

/// `saslname` of RFC 5802 §5.1: `=` and `,` escaped as `=3D` and `=2C`.
fn sasl_name(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

/// Hi() of RFC 5802 §2.2: PBKDF2 with HMAC-H, one block of the hash's output size.
fn hi<D: EagerHash>(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0; <D as Digest>::output_size()];
    pbkdf2::pbkdf2_hmac::<D>(password, salt, iterations, &mut out);
    out
}

fn hmac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8> {
    // Invariant: HMAC takes keys of any length (longer ones are hashed, RFC 2104 §2).
    let mut mac = <Hmac<D> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn malformed(what: &str) -> SaslFailure {
    SaslFailure::Protocol(what.to_owned())
}

/// The `k=value` attributes of a SCRAM message, in order.
struct Attributes<'a>(Vec<(char, &'a str)>);

impl<'a> Attributes<'a> {
    fn parse(message: &'a str) -> Result<Self, SaslFailure> {
        message
            .split(',')
            .map(|attr| {
                let mut chars = attr.chars();
                match (chars.next(), chars.next()) {
                    (Some(key), Some('=')) if key.is_ascii_alphabetic() => Ok((key, &attr[2..])),
                    _ => Err(malformed("a SCRAM attribute is not of the form k=value")),
                }
            })
            .collect::<Result<_, _>>()
            .map(Attributes)
    }

    fn first_key(&self) -> Option<char> {
        self.0.first().map(|(k, _)| *k)
    }

    fn get(&self, key: char) -> Option<&'a str> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the exchange of an RFC example: checks client-first and client-final byte for byte,
    /// and that the server's signature is accepted.
    fn replay<D: EagerHash + Send + 'static>(
        nonce: &str,
        client_first: &str,
        server_first: &str,
        client_final: &str,
        server_final: &str,
    ) {
        let (client, first) = ScramClient::<D>::start("user", "pencil", nonce.to_owned());
        assert_eq!(String::from_utf8(first).unwrap(), client_first);
        let (last, fin) = client.server_first(server_first.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(fin).unwrap(), client_final);
        last.server_final(server_final.as_bytes()).unwrap();
    }

    #[test]
    fn rfc5802_sha1_example() {
        // RFC 5802 §5, the SCRAM-SHA-1 exchange (the only hash it gives an example for): the
        // generic code is the same for SHA-256 and SHA-512.
        replay::<sha1::Sha1>(
            "fyko+d2lbbFgONRv9qkxdawL",
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    #[test]
    fn rfc7677_sha256_example() {
        // RFC 7677 §3.
        replay::<sha2::Sha256>(
            "rOprNGfwEbeRWgbNEkqO",
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,\
             i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn started() -> ScramClient<sha2::Sha256> {
        ScramClient::start("user", "pencil", "rOprNGfwEbeRWgbNEkqO".to_owned()).0
    }

    #[test]
    fn user_names_are_escaped() {
        let (_, first) = ScramClient::<sha2::Sha512>::start("a=b,c", "p", "n0nce".to_owned());
        assert_eq!(first, b"n,,n=a=3Db=2Cc,r=n0nce");
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let (last, _) = started().server_first(SERVER_FIRST.as_bytes()).unwrap();
        let e = last
            .server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap_err();
        assert!(
            matches!(&e, SaslFailure::Protocol(m) if m.contains("signature")),
            "{e:?}"
        );
    }

    #[test]
    fn a_server_error_is_a_refusal_with_its_text() {
        let (last, _) = started().server_first(SERVER_FIRST.as_bytes()).unwrap();
        let e = last.server_final(b"e=invalid-proof").unwrap_err();
        assert_eq!(e, SaslFailure::Refused("invalid-proof".to_owned()));
    }

    #[test]
    fn bad_server_first_messages_are_refused() {
        for (bad, why) in [
            ("r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "nonce"),
            (
                "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "nonce",
            ),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
                "4095",
            ),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999",
                "999999999",
            ),
            (
                "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==",
                "iteration",
            ),
            ("r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096", "salt"),
            (
                "m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                "extension",
            ),
            ("garbage", "k=value"),
        ] {
            let e = started().server_first(bad.as_bytes()).err().unwrap();
            assert!(
                matches!(&e, SaslFailure::Protocol(m) if m.contains(why)),
                "{bad}: {e:?}"
            );
        }
    }
}
