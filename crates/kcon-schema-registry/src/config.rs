//! The registry client's properties, under the names Confluent's serializers take
//! (`AbstractKafkaSchemaSerDeConfig`, `SchemaRegistryClientConfig`).

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use kcon_core::ConfigError;
use kcon_core::property::registry::{self, Configurable, DefaultValue, Kind, Part, Property};
use kcon_core::property::{millis_allowed, parse_count};

/// The Schema Registry client's: [`SchemaRegistryBuilder`](crate::SchemaRegistryBuilder).
pub const SCHEMA_REGISTRY: Part = Part::new("schema-registry");

const REGISTRY: &[Part] = &[SCHEMA_REGISTRY];

const URLS: &str = "one or more http:// or https:// URLs, comma-separated";
const FILE: &str = "the path of a PEM file; empty unsets it";

/// One of the registry client's properties, read by its entry in [`PROPERTIES`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrySetting {
    /// `schema.registry.url`, as given.
    Url(String),
    /// `basic.auth.credentials.source`: true for USER_INFO, false for URL.
    BasicAuthFromUserInfo(bool),
    /// `basic.auth.user.info`; `None` when set empty.
    BasicAuthUserInfo(Option<String>),
    /// `bearer.auth.credentials.source` (STATIC_TOKEN, the one source there is).
    BearerAuthStaticToken,
    /// `bearer.auth.token`; `None` when set empty.
    BearerAuthToken(Option<String>),
    /// `schema.registry.ssl.ca.location`; `None` when set empty.
    SslCaLocation(Option<PathBuf>),
    /// `schema.registry.ssl.certificate.location`; `None` when set empty.
    SslCertificateLocation(Option<PathBuf>),
    /// `schema.registry.ssl.key.location`; `None` when set empty.
    SslKeyLocation(Option<PathBuf>),
    /// `schema.registry.ssl.endpoint.identification.algorithm`: whether the host is checked.
    SslEndpointIdentification(bool),
    /// `schema.registry.request.timeout.ms`.
    RequestTimeout(Duration),
    /// `max.schemas.per.subject`.
    MaxSchemasPerSubject(usize),
}

/// The properties [`SchemaRegistryBuilder::set`](crate::SchemaRegistryBuilder::set) takes,
/// under Confluent's names, in the order of the README's table. Values are taken as given,
/// spaces included.
pub static PROPERTIES: &[Property<RegistrySetting>] = &[
    Property {
        name: "schema.registry.url",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: REGISTRY,
        doc: "Comma-separated registry URLs (http:// or https://, a path prefix allowed), tried \
              in turn when one cannot be reached; required.",
        kind: Kind::Text {
            allowed: URLS,
            setting: RegistrySetting::Url,
        },
    },
    Property {
        name: "basic.auth.credentials.source",
        aliases: &[],
        default: DefaultValue::Derived("URL, or USER_INFO when basic.auth.user.info is set"),
        parts: REGISTRY,
        doc: "Where HTTP basic credentials come from: URL (user:password@ in the URL) or \
              USER_INFO (basic.auth.user.info); SASL_INHERIT is not supported.",
        kind: Kind::Other {
            allowed: "URL or USER_INFO",
            parse: |i| match i.value.to_ascii_uppercase().as_str() {
                "URL" => Ok(RegistrySetting::BasicAuthFromUserInfo(false)),
                "USER_INFO" => Ok(RegistrySetting::BasicAuthFromUserInfo(true)),
                _ => Err(i.refused()),
            },
        },
    },
    Property {
        name: "basic.auth.user.info",
        aliases: &["schema.registry.basic.auth.user.info"],
        default: DefaultValue::Unset,
        parts: REGISTRY,
        doc: "user:password for HTTP basic authentication (the alias is its old name).",
        kind: Kind::Optional {
            trim: false,
            allowed: "user:password; empty unsets it",
            setting: RegistrySetting::BasicAuthUserInfo,
        },
    },
    Property {
        name: "bearer.auth.credentials.source",
        aliases: &[],
        default: DefaultValue::Derived("STATIC_TOKEN"),
        parts: REGISTRY,
        doc: "Where a bearer token comes from: STATIC_TOKEN (bearer.auth.token) only.",
        kind: Kind::Other {
            allowed: "STATIC_TOKEN",
            parse: |i| {
                if i.value.eq_ignore_ascii_case("STATIC_TOKEN") {
                    Ok(RegistrySetting::BearerAuthStaticToken)
                } else {
                    Err(i.refused())
                }
            },
        },
    },
    Property {
        name: "bearer.auth.token",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: REGISTRY,
        doc: "A bearer token sent as `Authorization: Bearer`; not together with basic \
              credentials.",
        kind: Kind::Optional {
            trim: false,
            allowed: "a token; empty unsets it",
            setting: RegistrySetting::BearerAuthToken,
        },
    },
    Property {
        name: "schema.registry.ssl.ca.location",
        aliases: &[],
        default: DefaultValue::Derived("the system's trust store"),
        parts: REGISTRY,
        doc: "A PEM file of the CAs that may sign the registry's certificate.",
        kind: Kind::Optional {
            trim: false,
            allowed: FILE,
            setting: |p| RegistrySetting::SslCaLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "schema.registry.ssl.certificate.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: REGISTRY,
        doc: "The client's PEM certificate chain, for a registry that authenticates clients by \
              certificate; needs schema.registry.ssl.key.location.",
        kind: Kind::Optional {
            trim: false,
            allowed: FILE,
            setting: |p| RegistrySetting::SslCertificateLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "schema.registry.ssl.key.location",
        aliases: &[],
        default: DefaultValue::Unset,
        parts: REGISTRY,
        doc: "The unencrypted PEM private key of schema.registry.ssl.certificate.location.",
        kind: Kind::Optional {
            trim: false,
            allowed: FILE,
            setting: |p| RegistrySetting::SslKeyLocation(p.map(PathBuf::from)),
        },
    },
    Property {
        name: "schema.registry.ssl.endpoint.identification.algorithm",
        aliases: &[],
        default: DefaultValue::Value("https"),
        parts: REGISTRY,
        doc: "https: the registry's certificate must name the host of its URL; none (or empty): \
              any trusted certificate will do.",
        kind: Kind::Other {
            allowed: "https or none",
            parse: |i| match i.value.to_ascii_lowercase().as_str() {
                "https" => Ok(RegistrySetting::SslEndpointIdentification(true)),
                "none" | "" => Ok(RegistrySetting::SslEndpointIdentification(false)),
                _ => Err(i.refused()),
            },
        },
    },
    Property {
        name: "schema.registry.request.timeout.ms",
        aliases: &[],
        default: DefaultValue::Value("30000"),
        parts: REGISTRY,
        doc: "kcon's own: the longest one lookup may take in all (connecting, TLS, the answer, \
              every URL tried); past it the record's failure is retriable.",
        kind: Kind::Other {
            allowed: millis_allowed(1),
            parse: |i| match i.value.parse::<u64>() {
                Ok(ms) if ms >= 1 => Ok(RegistrySetting::RequestTimeout(Duration::from_millis(ms))),
                _ => Err(i.refused()),
            },
        },
    },
    Property {
        name: "max.schemas.per.subject",
        aliases: &[],
        default: DefaultValue::Value("1000"),
        parts: REGISTRY,
        doc: "The most schemas kept: by the client (as fetched) and by each deserializer (as \
              parsed); the least recently used go first.",
        kind: Kind::Other {
            allowed: "a whole number from 1 to 1000000",
            parse: |i| {
                parse_count(i.property, i.value, 1, 1_000_000, i.allowed)
                    .map(RegistrySetting::MaxSchemasPerSubject)
            },
        },
    },
];

/// The properties as set, before the checks across them.
#[derive(Debug)]
struct Given {
    url: Option<String>,
    basic_source: Option<bool>,
    user_info: Option<String>,
    bearer_source: bool,
    token: Option<String>,
    tls: TlsFiles,
    timeout: Duration,
    capacity: usize,
}

impl Default for Given {
    fn default() -> Self {
        Given {
            url: None,
            basic_source: None,
            user_info: None,
            bearer_source: false,
            token: None,
            tls: TlsFiles {
                ca: None,
                certificate: None,
                key: None,
                verify_host: true,
            },
            timeout: Duration::from_secs(30),
            capacity: 1000,
        }
    }
}

impl Configurable<RegistrySetting> for Given {
    const PART: Part = SCHEMA_REGISTRY;

    fn apply(&mut self, setting: &RegistrySetting) -> bool {
        match setting {
            RegistrySetting::Url(url) => self.url = Some(url.clone()),
            RegistrySetting::BasicAuthFromUserInfo(on) => self.basic_source = Some(*on),
            RegistrySetting::BasicAuthUserInfo(info) => self.user_info = info.clone(),
            RegistrySetting::BearerAuthStaticToken => self.bearer_source = true,
            RegistrySetting::BearerAuthToken(token) => self.token = token.clone(),
            RegistrySetting::SslCaLocation(p) => self.tls.ca = p.clone(),
            RegistrySetting::SslCertificateLocation(p) => self.tls.certificate = p.clone(),
            RegistrySetting::SslKeyLocation(p) => self.tls.key = p.clone(),
            RegistrySetting::SslEndpointIdentification(on) => self.tls.verify_host = *on,
            RegistrySetting::RequestTimeout(d) => self.timeout = *d,
            RegistrySetting::MaxSchemasPerSubject(n) => self.capacity = *n,
        }
        true
    }
}

/// One registry URL, taken apart: its path is the prefix of the registry's API.
pub(crate) use kcon_pool::http::HttpEndpoint as Endpoint;

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    None,
    /// The `Authorization` header value, `Basic ...`; `None` to take each URL's own user info.
    Basic(Option<String>),
    Bearer(String),
}

impl Auth {
    /// The `Authorization` header for a request to `endpoint`, if any.
    pub(crate) fn header(&self, endpoint: &Endpoint) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic(Some(h)) => Some(h.clone()),
            Auth::Basic(None) => endpoint.user_info.as_deref().map(basic),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
        }
    }
}

fn basic(user_info: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_info)
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) ca: Option<PathBuf>,
    pub(crate) certificate: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) verify_host: bool,
}

/// The registry client's settings, checked.
#[derive(Debug, Clone)]
pub(crate) struct RegistryConfig {
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) auth: Auth,
    pub(crate) tls: TlsFiles,
    pub(crate) timeout: Duration,
    pub(crate) capacity: usize,
}

impl RegistryConfig {
    /// The settings `properties` (name, value; a later one wins) make.
    pub(crate) fn from_properties(properties: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut given = Given::default();
        for (name, value) in properties {
            registry::set(PROPERTIES, &mut given, name, value)?;
        }
        let Given {
            url,
            basic_source,
            user_info,
            bearer_source,
            token,
            tls,
            timeout,
            capacity,
        } = given;
        let url = url.ok_or_else(|| ConfigError::invalid("schema.registry.url", "", URLS))?;
        let endpoints = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                parse_url(u).ok_or_else(|| {
                    invalid(
                        "schema.registry.url",
                        u,
                        "http:// or https:// URLs with a host, comma-separated",
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(invalid("schema.registry.url", &url, URLS));
        }
        let basic_from_user_info = basic_source.unwrap_or(user_info.is_some());
        let basic_auth = if basic_from_user_info {
            let info = user_info.as_deref().ok_or_else(|| {
                invalid(
                    "basic.auth.user.info",
                    "",
                    "user:password, with basic.auth.credentials.source=USER_INFO",
                )
            })?;
            Some(Auth::Basic(Some(basic(info))))
        } else if user_info.is_some() {
            return Err(ConfigError::unusable(
                "basic.auth.user.info",
                "<redacted>",
                "basic.auth.credentials.source=URL takes the credentials from the URL",
            ));
        } else if endpoints.iter().any(|e| e.user_info.is_some()) {
            Some(Auth::Basic(None))
        } else {
            None
        };
        let auth = match (basic_auth, token) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::unusable(
                    "bearer.auth.token",
                    "<redacted>",
                    "basic and bearer authentication cannot be used together",
                ));
            }
            (Some(b), None) => b,
            (None, Some(t)) => Auth::Bearer(t),
            (None, None) => {
                if bearer_source {
                    return Err(invalid(
                        "bearer.auth.token",
                        "",
                        "a token, with bearer.auth.credentials.source=STATIC_TOKEN",
                    ));
                }
                Auth::None
            }
        };
        if tls.certificate.is_some() != tls.key.is_some() {
            return Err(invalid(
                "schema.registry.ssl.key.location",
                "",
                "a PEM key file together with schema.registry.ssl.certificate.location",
            ));
        }
        Ok(RegistryConfig {
            endpoints,
            auth,
            tls,
            timeout,
            capacity,
        })
    }
}

fn invalid(property: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::invalid(property, value, expected)
}

/// `http[s]://[user:password@]host[:port][/path]`; the port defaults to 80 or 443.
pub(crate) fn parse_url(url: &str) -> Option<Endpoint> {
    Endpoint::parse(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(props: &[(&str, &str)]) -> Result<RegistryConfig, ConfigError> {
        let props: Vec<(String, String)> = props
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        RegistryConfig::from_properties(&props)
    }

    #[test]
    fn the_table_is_sound_and_its_defaults_are_the_clients() {
        assert_eq!(
            registry::faults(registry::erased(PROPERTIES)),
            [] as [String; 0]
        );
        assert_eq!(
            registry::defaults_disagreeing::<_, Given>(PROPERTIES),
            [] as [&str; 0]
        );
    }

    #[test]
    fn credentials_come_from_user_info_or_the_url_and_never_both_kinds() {
        let c = config(&[
            ("schema.registry.url", "http://h:1"),
            ("schema.registry.basic.auth.user.info", "alice:secret"),
        ])
        .unwrap();
        assert_eq!(
            c.auth.header(&c.endpoints[0]).as_deref(),
            Some("Basic YWxpY2U6c2VjcmV0")
        );
        let c = config(&[("schema.registry.url", "http://bob:pw@h:1,http://h2:1")]).unwrap();
        assert_eq!(
            c.auth.header(&c.endpoints[0]).as_deref(),
            Some("Basic Ym9iOnB3")
        );
        assert_eq!(c.auth.header(&c.endpoints[1]), None);
        let c = config(&[
            ("schema.registry.url", "http://h:1"),
            ("bearer.auth.credentials.source", "STATIC_TOKEN"),
            ("bearer.auth.token", "tok"),
        ])
        .unwrap();
        assert_eq!(
            c.auth.header(&c.endpoints[0]).as_deref(),
            Some("Bearer tok")
        );
        let refused = |props: &[(&str, &str)], property: &str| {
            let e = config(props).unwrap_err();
            assert_eq!(e.property(), property, "{e}");
        };
        refused(
            &[
                ("schema.registry.url", "http://h:1"),
                ("basic.auth.user.info", "a:b"),
                ("bearer.auth.token", "t"),
            ],
            "bearer.auth.token",
        );
        refused(
            &[
                ("schema.registry.url", "http://h:1"),
                ("basic.auth.credentials.source", "USER_INFO"),
            ],
            "basic.auth.user.info",
        );
        refused(
            &[
                ("schema.registry.url", "http://h:1"),
                ("basic.auth.credentials.source", "SASL_INHERIT"),
            ],
            "basic.auth.credentials.source",
        );
        refused(&[("schema.registry.url", "h:1")], "schema.registry.url");
        refused(&[], "schema.registry.url");
        refused(
            &[
                ("schema.registry.url", "http://h"),
                ("schema.registry.request.timeout.ms", "0"),
            ],
            "schema.registry.request.timeout.ms",
        );
        refused(
            &[
                ("schema.registry.url", "http://h"),
                ("schema.registry.uri", "x"),
            ],
            "schema.registry.uri",
        );
    }
}
