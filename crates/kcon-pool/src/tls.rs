//! TLS for broker connections: rustls with the *ring* provider, built once per pool from the
//! `ssl.*` properties; the handshake; and the words for what went wrong.
//!
//! Trust: the CAs of `ssl.ca.location`, else the system's trust store (rustls-native-certs),
//! as librdkafka does with OpenSSL's default paths. The system store rather than a compiled-in
//! list (webpki-roots) because the clusters that need TLS are mostly company clusters whose
//! internal CA is installed in the system store, and because a compiled-in list goes stale
//! with the binary.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use kcon_core::ConfigError;

use crate::config::{EndpointIdentification, PoolConfig, split_host_port};
use crate::error::{Error, Peer, TlsError};

/// A pool's TLS settings, loaded: certificates read, keys parsed, verifier chosen.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
}

impl Tls {
    /// The TLS settings of `config`, if its `security.protocol` uses TLS. Reads the files it
    /// names now, so that a missing or malformed one is a configuration error up front, not a
    /// failure at every connect.
    pub(crate) fn from_config(config: &PoolConfig) -> Result<Option<Tls>, ConfigError> {
        if !config.security_protocol.uses_tls() {
            return Ok(None);
        }
        let client = client_config(TlsFiles {
            prefix: "",
            ca_location: config.ssl_ca_location.as_deref(),
            certificate_location: config.ssl_certificate_location.as_deref(),
            key_location: config.ssl_key_location.as_deref(),
            verify_hostname: config.ssl_endpoint_identification_algorithm
                == EndpointIdentification::Https,
        })?;
        Ok(Some(Tls {
            connector: TlsConnector::from(Arc::new(client)),
        }))
    }

    /// Runs the TLS handshake on `tcp` for the broker at `peer.address`: its host is both the
    /// SNI name (rustls sends none for an IP address, as RFC 6066 says) and the name the
    /// certificate must give.
    pub(crate) async fn handshake(
        &self,
        peer: &Peer,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let host = split_host_port(&peer.address).map_or(peer.address.as_str(), |(h, _)| h);
        let tls_error = |kind| Error::Tls {
            peer: peer.clone(),
            kind,
        };
        let name = ServerName::try_from(host)
            .map_err(|_| tls_error(TlsError::InvalidServerName(host.to_owned())))?
            .to_owned();
        self.connector.connect(name, tcp).await.map_err(|e| {
            match e.kind() {
                // Cut before the handshake finished, with no alert to say why.
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                    if classify(&e).is_none() =>
                {
                    tls_error(TlsError::ClosedInHandshake)
                }
                _ => Error::io(peer, e),
            }
        })
    }
}

/// Where a TLS client finds the CAs it trusts and its own certificate, and whether a server's
/// certificate must name the host. Every property named in an error is `prefix` followed by
/// Kafka's own name: `ssl.ca.location` for broker connections (prefix `""`),
/// `schema.registry.ssl.ca.location` for the Schema Registry (prefix `"schema.registry."`).
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// What goes before `ssl.…` in the property names of errors.
    pub prefix: &'static str,
    /// `ssl.ca.location`: the CAs in this PEM file; the system's trust store when `None`.
    pub ca_location: Option<&'a Path>,
    /// `ssl.certificate.location`: the client's certificate chain (with `key_location`).
    pub certificate_location: Option<&'a Path>,
    /// `ssl.key.location`: the client's private key, unencrypted.
    pub key_location: Option<&'a Path>,
    /// `ssl.endpoint.identification.algorithm=https` (`true`) or `none` (`false`: the chain
    /// must still be trusted; the name in it is not checked).
    pub verify_hostname: bool,
}

/// A rustls client configuration for `files`, with the *ring* provider. Reads the files now,
/// so that a missing or malformed one is a configuration error naming its property up front,
/// not a failure at every connect.
pub fn client_config(files: TlsFiles<'_>) -> Result<ClientConfig, ConfigError> {
    let prefix = files.prefix;
    // The provider is named, not taken from the process default: kcon builds *ring* only,
    // and an application may have installed another default for its own purposes.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = Arc::new(match files.ca_location {
        Some(path) => ca_file(prefix, path)?,
        None => system_roots(prefix)?,
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            ConfigError::unusable(&format!("{prefix}ssl.ca.location"), "", e.to_string())
        })?;
    let builder = if files.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| {
                ConfigError::unusable(&format!("{prefix}ssl.ca.location"), "", e.to_string())
            })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
    };
    let mut client = match (files.certificate_location, files.key_location) {
        (Some(cert), Some(key)) => {
            let chain = certificates(&format!("{prefix}ssl.certificate.location"), cert)?;
            let private = private_key(prefix, key)?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                ConfigError::unusable(
                    &format!("{prefix}ssl.key.location"),
                    &key.display().to_string(),
                    format!("does not go with {prefix}ssl.certificate.location: {e}"),
                )
            })?
        }
        // Each configuration refuses one without the other.
        _ => builder.with_no_client_auth(),
    };
    // No session resumption. A client makes one or two long-lived connections per server,
    // so resuming would save a handshake now and then; and it is what OpenSSL-based TLS
    // terminators that check client certificates get wrong without a session id context
    // (measured with socat `verify=1`: the resumed second connection gets an
    // internal_error alert). A full handshake every time works everywhere.
    client.resumption = rustls::client::Resumption::disabled();
    Ok(client)
}

/// The TLS error inside an IO error from a TLS stream, in kcon's words; `None` for an IO error
/// that carries none.
pub(crate) fn classify(e: &io::Error) -> Option<TlsError> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => TlsError::UnknownCa,
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented,
        }) => TlsError::HostnameMismatch {
            host: server_name(expected),
            presented: presented.clone(),
        },
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            TlsError::HostnameMismatch {
                host: String::new(),
                presented: Vec::new(),
            }
        }
        rustls::Error::InvalidCertificate(other) => TlsError::BadCertificate(format!("{other:?}")),
        rustls::Error::AlertReceived(alert) => TlsError::Refused {
            alert: format!("{alert:?}"),
        },
        // Bytes that do not parse as TLS records: the other end does not speak TLS.
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            TlsError::NotTls
        }
        other => TlsError::Other(other.to_string()),
    })
}

fn server_name(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// Every certificate in the PEM file `path`; at least one.
fn certificates(property: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let shown = path.display().to_string();
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| ConfigError::unusable(property, &shown, pem_error(e)))?;
    if certs.is_empty() {
        return Err(ConfigError::unusable(
            property,
            &shown,
            "no CERTIFICATE in the PEM file",
        ));
    }
    Ok(certs)
}

/// The CAs of `ssl.ca.location`.
fn ca_file(prefix: &str, path: &Path) -> Result<RootCertStore, ConfigError> {
    let property = format!("{prefix}ssl.ca.location");
    let mut roots = RootCertStore::empty();
    for cert in certificates(&property, path)? {
        roots.add(cert).map_err(|e| {
            ConfigError::unusable(
                &property,
                &path.display().to_string(),
                format!("a certificate cannot serve as a CA: {e}"),
            )
        })?;
    }
    Ok(roots)
}

/// The system's trust store. Certificates it cannot parse are skipped, as OpenSSL does; an
/// empty result is an error, since nothing could then be verified.
fn system_roots(prefix: &str) -> Result<RootCertStore, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(ConfigError::unusable(
            &format!("{prefix}ssl.ca.location"),
            "",
            format!("unset, and the system's trust store gave no CA certificate ({why}): set it"),
        ));
    }
    Ok(roots)
}

/// The private key of `ssl.key.location`: the first key in the file, in PKCS#8, PKCS#1 or SEC1.
fn private_key(prefix: &str, path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let shown = path.display().to_string();
    let property = format!("{prefix}ssl.key.location");
    let unusable = |reason: String| ConfigError::unusable(&property, &shown, reason);
    match PrivateKeyDer::from_pem_file(path) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            // An encrypted key's section is skipped as unknown: say so rather than "no key".
            let text = std::fs::read_to_string(path).unwrap_or_default();
            Err(unusable(if text.contains("ENCRYPTED") {
                format!(
                    "the key is encrypted; kcon reads unencrypted keys only \
                     ({prefix}ssl.key.password is not supported)"
                )
            } else {
                "no PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY in the PEM file"
                    .to_owned()
            }))
        }
        Err(e) => Err(unusable(pem_error(e))),
    }
}

fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        other => format!("not a valid PEM file: {other:?}"),
    }
}

/// `ssl.endpoint.identification.algorithm=none`: the full WebPKI check, chain, validity and
/// signatures, except that the certificate may name any host.
struct AnyName(Arc<WebPkiServerVerifier>);

impl fmt::Debug for AnyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyName")
    }
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            // WebPKI checks the name last, after the chain, validity and revocation have
            // passed: a name error alone means the certificate is otherwise good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
