//! The TLS and SASL settings of a [`PoolConfig`], checked together: what the protocol and
//! mechanism need is there, and nothing is set that they would ignore. Their values
//! (`SecurityProtocol`, `SaslMechanism`, ...) are kcon-core's, read by the pool's property table.

use kcon_core::ConfigError;

use super::{OAuthBearerMethod, PoolConfig, SaslMechanism};

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
                    "sasl.oauthbearer.token.file",
                    self.sasl_oauthbearer_token_file.is_some(),
                ),
                (
                    "sasl.oauthbearer.config",
                    self.sasl_oauthbearer_config.is_some(),
                ),
                (
                    "enable.sasl.oauthbearer.unsecure.jwt",
                    self.enable_sasl_oauthbearer_unsecure_jwt,
                ),
            ];
            let oidc = self.sasl_oauthbearer_oidc.set();
            let kerberos = self.sasl_kerberos.set();
            let aws = self.sasl_aws.set();
            let first = set
                .iter()
                .find(|(_, set)| *set)
                .map(|(property, _)| *property)
                .or(oidc.first().map(|(property, _)| *property))
                .or(kerberos.first().map(|(property, _)| *property))
                .or(aws.first().map(|(property, _)| *property));
            if let Some(property) = first {
                return Err(ConfigError::invalid(
                    property,
                    "(set)",
                    "unset unless security.protocol is SASL_PLAINTEXT or SASL_SSL",
                ));
            }
            if self.sasl_oauthbearer_token_provider.is_some() {
                return Err(ConfigError::unusable(
                    "security.protocol",
                    protocol.name(),
                    "the application gives an OAUTHBEARER token provider, which only \
                     SASL_PLAINTEXT and SASL_SSL use",
                ));
            }
            return Ok(());
        }
        let Some(mechanism) = self.sasl_mechanism else {
            return Err(ConfigError::invalid(
                "sasl.mechanism",
                "",
                "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI: security.protocol \
                 SASL_PLAINTEXT and SASL_SSL need one",
            ));
        };
        if mechanism != SaslMechanism::Gssapi
            && let Some((property, value)) = self.sasl_kerberos.set().into_iter().next()
        {
            return Err(ConfigError::unusable(
                property,
                &value,
                format!(
                    "it is for sasl.mechanism GSSAPI, and sasl.mechanism is {}",
                    mechanism.name()
                ),
            ));
        }
        if mechanism == SaslMechanism::OAuthBearer {
            return self.validate_token_source();
        }
        // Token sources are OAUTHBEARER's: set with another mechanism, they would be ignored.
        let token_sources = [
            (
                "sasl.oauthbearer.token.file",
                self.sasl_oauthbearer_token_file
                    .as_ref()
                    .map(|p| p.display().to_string()),
            ),
            (
                "sasl.oauthbearer.config",
                self.sasl_oauthbearer_config
                    .as_ref()
                    .map(ToString::to_string),
            ),
            (
                "enable.sasl.oauthbearer.unsecure.jwt",
                self.enable_sasl_oauthbearer_unsecure_jwt
                    .then(|| "true".to_owned()),
            ),
        ];
        let oidc = self
            .sasl_oauthbearer_oidc
            .set()
            .into_iter()
            .chain(self.sasl_aws.set())
            .map(|(property, value)| (property, Some(value)));
        let mut token_sources = token_sources.into_iter().chain(oidc);
        if let Some((property, Some(value))) = token_sources.find(|(_, set)| set.is_some()) {
            return Err(ConfigError::unusable(
                property,
                &value,
                format!(
                    "it is for sasl.mechanism OAUTHBEARER, and sasl.mechanism is {}",
                    mechanism.name()
                ),
            ));
        }
        if self.sasl_oauthbearer_token_provider.is_some() {
            return Err(ConfigError::unusable(
                "sasl.mechanism",
                mechanism.name(),
                "the application gives an OAUTHBEARER token provider, which only \
                 sasl.mechanism OAUTHBEARER uses",
            ));
        }
        if mechanism == SaslMechanism::Gssapi {
            return self.validate_gssapi();
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

impl PoolConfig {
    /// GSSAPI: the build has it, no user name or password (which it would ignore), and no NUL
    /// in what goes to the C library.
    fn validate_gssapi(&self) -> Result<(), ConfigError> {
        for (property, set) in [
            ("sasl.username", self.sasl_username.is_some()),
            ("sasl.password", self.sasl_password.is_some()),
        ] {
            if set {
                return Err(ConfigError::unusable(
                    property,
                    "(set)",
                    "it is for PLAIN and SCRAM; GSSAPI logs in as sasl.kerberos.principal",
                ));
            }
        }
        if !cfg!(feature = "gssapi") {
            return Err(ConfigError::unusable(
                "sasl.mechanism",
                "GSSAPI",
                "this build of kcon has no GSSAPI: enable the feature gssapi (of kcon, or of \
                 kcon-pool), which opens MIT Kerberos's libgssapi_krb5 when a client logs in",
            ));
        }
        let k = &self.sasl_kerberos;
        let texts = [
            ("sasl.kerberos.service.name", Some(k.service_name.clone())),
            ("sasl.kerberos.principal", k.principal.clone()),
            (
                "sasl.kerberos.keytab",
                k.keytab.as_ref().map(|p| p.display().to_string()),
            ),
            ("sasl.kerberos.ccache", k.ccache.clone()),
        ];
        for (property, value) in texts {
            if let Some(v) = value.filter(|v| v.contains('\0')) {
                return Err(ConfigError::invalid(
                    property,
                    &v.replace('\0', "\\0"),
                    "text without NUL characters",
                ));
            }
        }
        if k.service_name.is_empty() || k.service_name.contains(['@', '/']) {
            return Err(ConfigError::invalid(
                "sasl.kerberos.service.name",
                &k.service_name,
                "a name without '@' or '/'",
            ));
        }
        Ok(())
    }

    /// `sasl.oauthbearer.method=aws_msk_iam`: the only source of tokens, no setting of the
    /// token endpoint's (which it would ignore), a region that can be one, and a build that
    /// has it.
    fn validate_aws_msk_iam(
        &self,
        provider: bool,
        file: bool,
        unsecured: bool,
    ) -> Result<(), ConfigError> {
        let other = if provider {
            Some("the application gives a token provider too")
        } else if file {
            Some("sasl.oauthbearer.token.file is set too")
        } else if unsecured {
            Some("sasl.oauthbearer.config is set too")
        } else {
            None
        };
        if let Some(other) = other {
            return Err(ConfigError::unusable(
                "sasl.oauthbearer.method",
                "aws_msk_iam",
                format!("{other}: OAUTHBEARER takes one source of tokens"),
            ));
        }
        if let Some((property, value)) = self
            .sasl_oauthbearer_oidc
            .set()
            .into_iter()
            .find(|(property, _)| *property != "sasl.oauthbearer.method")
        {
            return Err(ConfigError::unusable(
                property,
                &value,
                "it is for an OAuth token endpoint (sasl.oauthbearer.method=oidc); aws_msk_iam \
                 signs its own tokens",
            ));
        }
        if let Some(region) = &self.sasl_aws.region
            && !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ConfigError::invalid(
                "sasl.aws.region",
                region,
                "an AWS region: letters, digits and '-' (eu-west-1)",
            ));
        }
        if let Some(arn) = &self.sasl_aws.role_arn
            && !(arn.starts_with("arn:") && arn.contains(":role/"))
        {
            return Err(ConfigError::invalid(
                "sasl.aws.role.arn",
                arn,
                "a role's ARN: arn:aws:iam::ACCOUNT:role/NAME",
            ));
        }
        if let Some(name) = &self.sasl_aws.role_session_name
            && !((2..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b)))
        {
            return Err(ConfigError::invalid(
                "sasl.aws.role.session.name",
                name,
                "2 to 64 of letters, digits and +=,.@-_",
            ));
        }
        if self.sasl_aws.role_session_name.is_some() && self.sasl_aws.role_arn.is_none() {
            return Err(ConfigError::unusable(
                "sasl.aws.role.session.name",
                self.sasl_aws.role_session_name.as_deref().unwrap_or(""),
                "it names the session of sasl.aws.role.arn, which is unset",
            ));
        }
        if !cfg!(feature = "aws-msk-iam") {
            return Err(ConfigError::unusable(
                "sasl.oauthbearer.method",
                "aws_msk_iam",
                "this build of kcon has no AWS MSK IAM: enable the feature aws-msk-iam (of \
                 kcon, or of kcon-pool)",
            ));
        }
        Ok(())
    }

    /// OAUTHBEARER's token comes from one source: the application's token provider,
    /// `sasl.oauthbearer.token.file`, or `sasl.oauthbearer.config` with
    /// `enable.sasl.oauthbearer.unsecure.jwt=true`.
    fn validate_token_source(&self) -> Result<(), ConfigError> {
        let file = self.sasl_oauthbearer_token_file.as_ref();
        let config = self.sasl_oauthbearer_config.as_ref();
        let unsecured = config.is_some();
        let enabled = self.enable_sasl_oauthbearer_unsecure_jwt;
        let shown = config.map(ToString::to_string).unwrap_or_default();
        if unsecured && !enabled {
            return Err(ConfigError::unusable(
                "sasl.oauthbearer.config",
                &shown,
                "the unsigned token it describes is sent only with \
                 enable.sasl.oauthbearer.unsecure.jwt=true (for development: anyone can make \
                 one)",
            ));
        }
        if enabled && !unsecured {
            return Err(ConfigError::unusable(
                "enable.sasl.oauthbearer.unsecure.jwt",
                "true",
                "sasl.oauthbearer.config, which describes the unsecured token, is unset",
            ));
        }
        let provider = self.sasl_oauthbearer_token_provider.is_some();
        let oidc = &self.sasl_oauthbearer_oidc;
        if oidc.method == Some(OAuthBearerMethod::AwsMskIam) {
            return self.validate_aws_msk_iam(provider, file.is_some(), unsecured);
        }
        if let Some((property, value)) = self.sasl_aws.set().into_iter().next() {
            return Err(ConfigError::unusable(
                property,
                &value,
                "it is for sasl.oauthbearer.method=aws_msk_iam",
            ));
        }
        if oidc.selected() && (provider || file.is_some() || unsecured) {
            let other = if provider {
                "the application gives a token provider too"
            } else if file.is_some() {
                "sasl.oauthbearer.token.file is set too"
            } else {
                "sasl.oauthbearer.config is set too"
            };
            return Err(ConfigError::unusable(
                "sasl.oauthbearer.token.endpoint.url",
                oidc.token_endpoint_url.as_deref().unwrap_or(""),
                format!("{other}: OAUTHBEARER takes one source of tokens"),
            ));
        }
        oidc.validate()?;
        if oidc.selected() {
            return Ok(());
        }
        match (provider, file, unsecured) {
            (true, None, false) | (false, Some(_), false) | (false, None, true) => Ok(()),
            (false, None, false) => Err(ConfigError::unusable(
                "sasl.mechanism",
                "OAUTHBEARER",
                "it needs a token: set sasl.oauthbearer.token.endpoint.url (an OAuth token \
                 endpoint, with the client's id and secret), sasl.oauthbearer.token.file (a file \
                 holding it), or sasl.oauthbearer.config with enable.sasl.oauthbearer.unsecure.jwt=true (an \
                 unsecured JWT, for development), or give the client a token provider in code",
            )),
            (_, Some(path), _) => Err(ConfigError::unusable(
                "sasl.oauthbearer.token.file",
                &path.display().to_string(),
                if unsecured {
                    "sasl.oauthbearer.config is set too: OAUTHBEARER takes one source of tokens"
                } else {
                    "the application gives a token provider too: OAUTHBEARER takes one source \
                     of tokens"
                },
            )),
            (true, None, true) => Err(ConfigError::unusable(
                "sasl.oauthbearer.config",
                &shown,
                "the application gives a token provider too: OAUTHBEARER takes one source of \
                 tokens",
            )),
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
        c.set("sasl.password", "pa55w0rd").unwrap();
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
        assert_eq!(e(&c).property(), "sasl.mechanism");
        let shown = e(&c).to_string();
        for property in [
            "sasl.oauthbearer.token.file",
            "sasl.oauthbearer.config",
            "enable.sasl.oauthbearer.unsecure.jwt=true",
        ] {
            assert!(shown.contains(property), "{shown}");
        }
        assert!(!shown.contains("PoolConfig"), "no Rust type: {shown}");
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
        assert!(c.set("sasl.mechanism", "KERBEROS").is_err());
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
    fn gssapi_takes_the_kerberos_properties_and_refuses_what_it_would_ignore() {
        let gssapi = || {
            let mut c = sasl();
            c.sasl_username = None;
            c.sasl_password = None;
            c.set("sasl.mechanism", "gssapi").unwrap();
            c
        };
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        let mut c = gssapi();
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::Gssapi));
        assert_eq!(c.sasl_kerberos.service_name, "kafka");
        c.set("sasl.kerberos.principal", "kcon@KCON.TEST").unwrap();
        c.set("sasl.kerberos.keytab", "/etc/kcon.keytab").unwrap();
        c.set("sasl.kerberos.ccache", "FILE:/tmp/cc").unwrap();
        c.set("sasl.kerberos.service.name", "kafka-prod").unwrap();
        if cfg!(feature = "gssapi") {
            c.validate().unwrap();
        } else {
            // A build without the feature says how to get it.
            let refused = e(&c);
            assert_eq!(refused.property(), "sasl.mechanism");
            assert!(refused.to_string().contains("feature gssapi"), "{refused}");
        }
        assert!(c.set("sasl.kerberos.service.name", "kafka/host").is_err());
        assert!(c.set("sasl.kerberos.service.name", "").is_err());
        // A user name or password would be ignored.
        let mut c = gssapi();
        c.set("sasl.username", "alice").unwrap();
        assert_eq!(e(&c).property(), "sasl.username");
        // Kerberos settings with another mechanism, or without SASL, would be ignored too.
        let mut c = sasl();
        c.set("sasl.kerberos.keytab", "/etc/kcon.keytab").unwrap();
        let refused = e(&c);
        assert_eq!(refused.property(), "sasl.kerberos.keytab");
        assert!(refused.to_string().contains("GSSAPI"), "{refused}");
        let mut c = PoolConfig::default();
        c.set("bootstrap.servers", "localhost:9092").unwrap();
        c.set("sasl.kerberos.principal", "kcon").unwrap();
        assert_eq!(e(&c).property(), "sasl.kerberos.principal");
        // No NUL reaches the C library.
        let mut c = gssapi();
        c.sasl_kerberos.principal = Some("kcon\0x".to_owned());
        if cfg!(feature = "gssapi") {
            assert_eq!(e(&c).property(), "sasl.kerberos.principal");
        }
    }

    #[test]
    fn aws_msk_iam_is_the_one_token_source_and_its_settings_are_refused_elsewhere() {
        let msk = || {
            let mut c = sasl();
            c.sasl_username = None;
            c.sasl_password = None;
            c.set("sasl.mechanism", "OAUTHBEARER").unwrap();
            c.set("sasl.oauthbearer.method", "AWS_MSK_IAM").unwrap();
            c
        };
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        let mut c = msk();
        c.set("sasl.aws.region", "eu-west-1").unwrap();
        c.set("sasl.aws.profile", "msk").unwrap();
        if cfg!(feature = "aws-msk-iam") {
            c.validate().unwrap();
        } else {
            let refused = e(&c);
            assert_eq!(refused.property(), "sasl.oauthbearer.method");
            assert!(
                refused.to_string().contains("feature aws-msk-iam"),
                "{refused}"
            );
        }
        // One source of tokens.
        let mut c = msk();
        c.set("sasl.oauthbearer.token.file", "/run/token").unwrap();
        let refused = e(&c);
        assert_eq!(refused.property(), "sasl.oauthbearer.method");
        assert!(refused.to_string().contains("one source"), "{refused}");
        // The token endpoint's settings would be ignored.
        let mut c = msk();
        c.set("sasl.oauthbearer.client.id", "id").unwrap();
        assert_eq!(
            e(&c).property(),
            "sasl.oauthbearer.client.credentials.client.id"
        );
        // A region that cannot be one, a role ARN or session name that cannot be one, and a
        // session name without a role.
        let mut c = msk();
        c.set("sasl.aws.region", "eu west").unwrap();
        assert_eq!(e(&c).property(), "sasl.aws.region");
        let mut c = msk();
        c.set("sasl.aws.role.arn", "msk-role").unwrap();
        assert_eq!(e(&c).property(), "sasl.aws.role.arn");
        let mut c = msk();
        c.set("sasl.aws.role.arn", "arn:aws:iam::123456789012:role/msk")
            .unwrap();
        c.set("sasl.aws.role.session.name", "a b").unwrap();
        assert_eq!(e(&c).property(), "sasl.aws.role.session.name");
        let mut c = msk();
        c.set("sasl.aws.role.session.name", "billing").unwrap();
        assert_eq!(e(&c).property(), "sasl.aws.role.session.name");
        // sasl.aws.* without aws_msk_iam, with another mechanism, or without SASL.
        let mut c = msk();
        c.set("sasl.oauthbearer.method", "default").unwrap();
        c.set("sasl.oauthbearer.token.file", "/run/token").unwrap();
        c.set("sasl.aws.region", "eu-west-1").unwrap();
        let refused = e(&c);
        assert_eq!(refused.property(), "sasl.aws.region");
        assert!(refused.to_string().contains("aws_msk_iam"), "{refused}");
        let mut c = sasl();
        c.set("sasl.aws.profile", "msk").unwrap();
        assert_eq!(e(&c).property(), "sasl.aws.profile");
        let mut c = PoolConfig::default();
        c.set("bootstrap.servers", "localhost:9092").unwrap();
        c.set("sasl.aws.region", "eu-west-1").unwrap();
        assert_eq!(e(&c).property(), "sasl.aws.region");
    }

    #[test]
    fn oauthbearer_takes_one_token_source_named_by_its_property() {
        let oauth = || {
            let mut c = sasl();
            c.sasl_username = None;
            c.sasl_password = None;
            c.set("sasl.mechanism", "OAUTHBEARER").unwrap();
            c
        };
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        let mut file = oauth();
        file.set("sasl.oauthbearer.token.file", "/run/token")
            .unwrap();
        file.validate().unwrap();
        let mut unsecured = oauth();
        unsecured
            .set("sasl.oauthbearer.config", "principal=alice")
            .unwrap();
        assert_eq!(e(&unsecured).property(), "sasl.oauthbearer.config");
        assert!(
            e(&unsecured)
                .to_string()
                .contains("enable.sasl.oauthbearer.unsecure.jwt=true"),
            "{}",
            e(&unsecured)
        );
        unsecured
            .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
            .unwrap();
        unsecured.validate().unwrap();
        let mut both = unsecured.clone();
        both.set("sasl.oauthbearer.token.file", "/run/token")
            .unwrap();
        assert_eq!(e(&both).property(), "sasl.oauthbearer.token.file");
        assert!(e(&both).to_string().contains("one source of tokens"));
        let mut switch_only = oauth();
        switch_only
            .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
            .unwrap();
        assert_eq!(
            e(&switch_only).property(),
            "enable.sasl.oauthbearer.unsecure.jwt"
        );
        // Set for another mechanism, or without SASL, they would be ignored.
        let mut scram = sasl();
        scram
            .set("sasl.oauthbearer.token.file", "/run/token")
            .unwrap();
        assert_eq!(e(&scram).property(), "sasl.oauthbearer.token.file");
        assert!(
            e(&scram)
                .to_string()
                .contains("sasl.mechanism is SCRAM-SHA-256")
        );
        let mut ssl = file.clone();
        ssl.sasl_mechanism = None;
        ssl.security_protocol = SecurityProtocol::Ssl;
        assert_eq!(e(&ssl).property(), "sasl.oauthbearer.token.file");
        // A value it cannot read is refused when set, with what is wrong.
        let refused = oauth()
            .set("sasl.oauthbearer.config", "principal=alice lifeSeconds=0")
            .unwrap_err();
        assert_eq!(refused.property(), "sasl.oauthbearer.config");
        assert!(refused.to_string().contains("lifeSeconds=0"), "{refused}");
    }

    /// [`sasl`] with OAUTHBEARER and a token endpoint, nothing else of it set yet.
    fn token_endpoint() -> PoolConfig {
        let mut c = sasl();
        c.sasl_username = None;
        c.sasl_password = None;
        c.set("sasl.mechanism", "OAUTHBEARER").unwrap();
        c.set(
            "sasl.oauthbearer.token.endpoint.url",
            "https://idp.example/oauth2/token",
        )
        .unwrap();
        c
    }

    #[test]
    fn an_oauth_token_endpoint_is_one_more_token_source_checked_with_its_settings() {
        let oidc = || {
            let mut c = token_endpoint();
            c.set("sasl.oauthbearer.client.id", "app").unwrap();
            c.set("sasl.oauthbearer.client.secret", "pw").unwrap();
            c
        };
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        // The URL alone selects it, as in the Java client; librdkafka's method=oidc too.
        let c = oidc();
        c.validate().unwrap();
        assert!(c.sasl_oauthbearer_oidc.selected());
        let mut c = oidc();
        c.set("sasl.oauthbearer.method", "oidc").unwrap();
        c.validate().unwrap();
        // What the grant needs.
        let mut c = oidc();
        c.set("sasl.oauthbearer.client.credentials.client.id", "")
            .unwrap();
        assert_eq!(
            e(&c).property(),
            "sasl.oauthbearer.client.credentials.client.id"
        );
        let mut c = oidc();
        c.set("sasl.oauthbearer.client.secret", "").unwrap();
        assert_eq!(
            e(&c).property(),
            "sasl.oauthbearer.client.credentials.client.secret"
        );
        let mut c = oidc();
        c.set("sasl.oauthbearer.token.endpoint.url", "idp.example/token")
            .unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.endpoint.url");
        assert!(
            e(&c).to_string().contains("http:// or https://"),
            "{}",
            e(&c)
        );
        let mut c = oidc();
        c.set("sasl.oauthbearer.token.endpoint.url", "").unwrap();
        c.set("sasl.oauthbearer.method", "OIDC").unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.endpoint.url");
        // A CA for an http:// endpoint would be ignored.
        let mut c = oidc();
        c.set("sasl.oauthbearer.token.endpoint.url", "http://idp:8080/t")
            .unwrap();
        c.set("https.ca.location", "/etc/idp-ca.pem").unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.ssl.ca.location");
        // method=default with the endpoint's settings: they would be ignored.
        let mut c = oidc();
        c.set("sasl.oauthbearer.method", "default").unwrap();
        c.set("sasl.oauthbearer.token.file", "/run/token").unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.endpoint.url");
        assert!(e(&c).to_string().contains("method is default"), "{}", e(&c));
        // One source of tokens.
        let mut c = oidc();
        c.set("sasl.oauthbearer.token.file", "/run/token").unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.endpoint.url");
        assert!(e(&c).to_string().contains("one source"), "{}", e(&c));
        // Another mechanism, or no SASL: refused, not ignored.
        let mut c = oidc();
        c.set("sasl.mechanism", "PLAIN").unwrap();
        c.set("sasl.username", "u").unwrap();
        c.set("sasl.password", "p").unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.endpoint.url");
        let mut c = oidc();
        c.set("security.protocol", "SSL").unwrap();
        c.set("sasl.mechanism", "PLAIN").unwrap();
        c.sasl_mechanism = None;
        assert_eq!(e(&c).property(), "sasl.oauthbearer.token.endpoint.url");
        // Bad values are refused when set, naming the property.
        let mut c = oidc();
        for (property, bad) in [
            ("sasl.oauthbearer.method", "kerberos"),
            ("sasl.login.refresh.window.factor", "0.4"),
            ("sasl.login.refresh.window.jitter", "0.3"),
            ("sasl.oauthbearer.extensions", "a=1,b"),
            ("sasl.oauthbearer.extensions", "a1=x"),
            ("sasl.oauthbearer.extensions", "auth=x"),
        ] {
            assert_eq!(
                c.set(property, bad).unwrap_err().property(),
                property,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_jwt_bearer_grant_needs_an_assertion_and_takes_the_client_whole_or_not_at_all() {
        let jwt = || {
            let mut c = token_endpoint();
            c.set(
                "sasl.oauthbearer.grant.type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
            )
            .unwrap();
            c.set("sasl.oauthbearer.assertion.private.key.file", "/k.pem")
                .unwrap();
            c
        };
        let e = |c: &PoolConfig| c.validate().unwrap_err();
        jwt().validate().unwrap();
        let mut c = jwt();
        c.set("sasl.oauthbearer.client.id", "app").unwrap();
        assert_eq!(
            e(&c).property(),
            "sasl.oauthbearer.client.credentials.client.secret"
        );
        c.set("sasl.oauthbearer.client.secret", "pw").unwrap();
        c.validate().unwrap();
        let mut c = jwt();
        c.set("sasl.oauthbearer.assertion.private.key.file", "")
            .unwrap();
        assert_eq!(
            e(&c).property(),
            "sasl.oauthbearer.assertion.private.key.file"
        );
        c.set("sasl.oauthbearer.assertion.file", "/run/a.jwt")
            .unwrap();
        c.validate().unwrap();
        c.set("sasl.oauthbearer.assertion.claim.sub", "me").unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.assertion.claim.sub");
        let mut c = jwt();
        c.set("sasl.oauthbearer.assertion.file", "/run/a.jwt")
            .unwrap();
        assert_eq!(e(&c).property(), "sasl.oauthbearer.assertion.file");
        // The assertion's settings with the client credentials grant would be ignored.
        let mut c = jwt();
        c.set("sasl.oauthbearer.grant.type", "client_credentials")
            .unwrap();
        c.set("sasl.oauthbearer.client.id", "app").unwrap();
        c.set("sasl.oauthbearer.client.secret", "pw").unwrap();
        assert_eq!(
            e(&c).property(),
            "sasl.oauthbearer.assertion.private.key.file"
        );
        // A key that cannot be read is refused when the pool is made, naming the property.
        let e = crate::pool::Pool::new(jwt()).unwrap_err();
        assert!(
            e.to_string()
                .contains("sasl.oauthbearer.assertion.private.key.file"),
            "{e}"
        );
    }

    #[test]
    fn debug_does_not_show_the_password() {
        let shown = format!("{:?}", sasl());
        assert!(!shown.contains("pa55w0rd"), "{shown}");
        let mut oidc = sasl();
        oidc.sasl_oauthbearer_oidc.client_secret = Some(Password::new("cl13nt-s3cret"));
        let shown = format!("{oidc:?}");
        assert!(!shown.contains("cl13nt-s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
