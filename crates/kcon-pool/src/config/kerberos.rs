//! GSSAPI's settings (`sasl.kerberos.*`): whose Kerberos credentials a connection logs in with,
//! and which service it logs in to.

use std::path::PathBuf;

/// `sasl.kerberos.service.name`'s default: the first part of the brokers' principals
/// (`kafka/broker-host@REALM`), as in the Java client and librdkafka.
pub const DEFAULT_SERVICE_NAME: &str = "kafka";

/// The Kerberos settings of `sasl.mechanism=GSSAPI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KerberosConfig {
    /// `sasl.kerberos.service.name`: the brokers' service name; a connection logs in to
    /// `service@host`, the host as dialled (the principal `service/host@REALM`). Default
    /// `kafka`.
    pub service_name: String,
    /// `sasl.kerberos.principal`: the client's principal (`name@REALM`, or `name` in the
    /// default realm). Unset: the credential cache's, or the keytab's first.
    pub principal: Option<String>,
    /// `sasl.kerberos.keytab`: a keytab with the principal's keys. The client then gets its
    /// tickets itself, and new ones before a login would find them expired.
    pub keytab: Option<PathBuf>,
    /// `sasl.kerberos.ccache`: the credential cache (`FILE:/path`, `DIR:`, `KEYRING:`). With a
    /// keytab, where its tickets are kept (default: a cache in memory, one per client); without
    /// one, where tickets that `kinit` or a daemon put are read (default: `KRB5CCNAME`, else the
    /// system's default cache).
    pub ccache: Option<String>,
}

impl Default for KerberosConfig {
    fn default() -> Self {
        KerberosConfig {
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            principal: None,
            keytab: None,
            ccache: None,
        }
    }
}

impl KerberosConfig {
    /// The settings set away from their defaults: (property, value shown), for the checks
    /// that refuse them where they would be ignored.
    pub(crate) fn set(&self) -> Vec<(&'static str, String)> {
        let mut set = Vec::new();
        if self.service_name != DEFAULT_SERVICE_NAME {
            set.push(("sasl.kerberos.service.name", self.service_name.clone()));
        }
        if let Some(p) = &self.principal {
            set.push(("sasl.kerberos.principal", p.clone()));
        }
        if let Some(k) = &self.keytab {
            set.push(("sasl.kerberos.keytab", k.display().to_string()));
        }
        if let Some(c) = &self.ccache {
            set.push(("sasl.kerberos.ccache", c.clone()));
        }
        set
    }
}
