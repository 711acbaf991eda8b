//! The TLS and SASL settings of a [`PoolConfig`], checked together: what the protocol and
//! mechanism need is there, and nothing is set that they would ignore. Their values
//! (`SecurityProtocol`, `SaslMechanism`, ...) are kcon-core's, read by the pool's property table.

use kcon_core::ConfigError;

use super::{PoolConfig, SaslMechanism};

impl PoolConfig {
    /// TLS and SASL settings: what the protocol and mechanism need is there, and nothing is
    /// set that they would ignore. Settings that would be ignored are refused rather than
    /// dropped silently (librdkafka ignores them): `ssl.ca.location` with `PLAINTEXT` most
    /// likely means the user believes the connection is encrypted.
    pub(crate) fn validate_security(&self) -> Result<(), ConfigError> {
        let protocol = self.security_protocol;
        if !protocol.uses_tls() {
            for (property, set) in [
                ("ssl.ca.location", &self.ssl_ca_location),
                ("ssl.certificate.location", &self.ssl_certificate_location),
                ("ssl.key.location", &self.ssl_key_location),
            ] {
                if let Some(path) = set {
                    return Err(ConfigError::invalid(
                        property,
                        &path.display().to_string(),
                        "unset unless security.protocol is SSL or SASL_SSL",
                    ));
                }
            }
        }
        match (&self.ssl_certificate_location, &self.ssl_key_location) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "ssl.key.location",
                    "",
                    "the client certificate's private key, since ssl.certificate.location is set",
                ));
            }
            (None, Some(key)) => {
                return Err(ConfigError::invalid(
                    "ssl.certificate.location",
                    &key.display().to_string(),
                    "the client certificate, since ssl.key.location is set",
                ));
            }
            _ => {}
        }
        if !protocol.uses_sasl() {
            let set = [
                ("sasl.mechanism", self.sasl_mechanism.is_some()),
                ("sasl.username", self.sasl_username.is_some()),
                ("sasl.password", self.sasl_password.is_some()),
                (
                    "sasl.oauthbearer.token.provider",
                    self.sasl_oauthbearer_token_provider.is_some(),
                ),
            ];
            if let Some((property, _)) = set.iter().find(|(_, set)| *set) {
                return Err(ConfigError::invalid(
                    property,
                    "(set)",
                    "unset unless security.protocol is SASL_PLAINTEXT or SASL_SSL",
                ));
            }
            return Ok(());
        }
        let Some(mechanism) = self.sasl_mechanism else {
            return Err(ConfigError::invalid(
                "sasl.mechanism",
                "",
                "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER: security.protocol \
                 SASL_PLAINTEXT and SASL_SSL need one",
            ));
        };
        if mechanism == SaslMechanism::OAuthBearer {
            if self.sasl_oauthbearer_token_provider.is_none() {
                return Err(ConfigError::invalid(
                    "sasl.oauthbearer.token.provider",
                    "",
                    "a token provider in PoolConfig::sasl_oauthbearer_token_provider: \
                     sasl.mechanism OAUTHBEARER needs one",
                ));
            }
            return Ok(());
        }
        // PLAIN and SCRAM. A NUL would split PLAIN's message (RFC 4616) in the wrong place.
        match &self.sasl_username {
            None => {
                return Err(ConfigError::invalid(
                    "sasl.username",
                    "",
                    "a user name: sasl.mechanism PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need one",
                ));
            }
            Some(user) if user.contains('\0') => {
                return Err(ConfigError::invalid(
                    "sasl.username",
                    user,
                    "a user name without NUL characters",
                ));
            }
            Some(_) => {}
        }
        match &self.sasl_password {
            None => Err(ConfigError::invalid(
                "sasl.password",
                "",
                "a password: sasl.mechanism PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 need one",
            )),
            Some(p) if p.expose().contains('\0') => Err(ConfigError::invalid(
                "sasl.password",
                "<redacted>",
                "a password without NUL characters",
            )),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Password, SecurityProtocol};

    /// A SASL_SSL config with SCRAM, valid.
    fn sasl() -> PoolConfig {
        let mut c = PoolConfig {
            bootstrap_servers: vec!["h:1".into()],
            ..PoolConfig::default()
        };
        c.set("security.protocol", "SASL_SSL").unwrap();
        c.set("sasl.mechanism", "SCRAM-SHA-256").unwrap();
        c.set("sasl.username", "alice").unwrap();
        c.set("sasl.password", "secret").unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn security_settings_are_checked_together() {
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        let mut c = sasl();
        c.sasl_username = None;
        assert_eq!(e(&c).property(), "sasl.username");
        assert!(e(&c).to_string().contains("need one"), "{}", e(&c));
        let mut c = sasl();
        c.sasl_password = None;
        assert_eq!(e(&c).property(), "sasl.password");
        let mut c = sasl();
        c.sasl_password = Some(Password::new("a\0b"));
        assert_eq!(e(&c).property(), "sasl.password");
        assert!(
            !e(&c).to_string().contains("a\0b"),
            "the password is not shown"
        );
        let mut c = sasl();
        c.sasl_mechanism = None;
        assert_eq!(e(&c).property(), "sasl.mechanism");
        let mut c = sasl();
        c.sasl_mechanism = Some(SaslMechanism::OAuthBearer);
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.provider");
        // Set, but for a protocol that would ignore them.
        let mut c = sasl();
        c.security_protocol = SecurityProtocol::Ssl;
        assert_eq!(e(&c).property(), "sasl.mechanism");
        let mut c = sasl();
        c.security_protocol = SecurityProtocol::SaslPlaintext;
        c.set("ssl.ca.location", "/ca.pem").unwrap();
        assert_eq!(e(&c).property(), "ssl.ca.location");
        let mut c = sasl();
        c.set("ssl.certificate.location", "/c.pem").unwrap();
        assert_eq!(e(&c).property(), "ssl.key.location");
        let mut c = sasl();
        c.set("ssl.key.location", "/k.pem").unwrap();
        assert_eq!(e(&c).property(), "ssl.certificate.location");
        // Bad values.
        let mut c = sasl();
        let gssapi = c.set("sasl.mechanism", "GSSAPI").unwrap_err();
        assert!(
            gssapi.to_string().contains("GSSAPI is not supported"),
            "{gssapi}"
        );
        assert_eq!(
            c.set("security.protocol", "TLS").unwrap_err().to_string(),
            "invalid value \"TLS\" for security.protocol: expected PLAINTEXT, SSL, \
             SASL_PLAINTEXT or SASL_SSL"
        );
        assert!(
            c.set("ssl.endpoint.identification.algorithm", "dns")
                .is_err()
        );
        assert_eq!(c, sasl(), "a refused value changes nothing");
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let shown = format!("{:?}", sasl());
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
