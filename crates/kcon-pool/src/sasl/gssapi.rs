//! GSSAPI (RFC 4752), client side: Kerberos V5 through the system's GSS-API library
//! (kcon-gssapi).
//!
//! The exchange, as Kafka's brokers run it (the JDK's `GssKrb5Server`):
//!
//! 1. The client's first message is the Kerberos AP-REQ for `service@host` (the library gets a
//!    ticket-granting ticket and the service's ticket from the KDC first, when its cache lacks
//!    them: done on a blocking thread, before anything is sent).
//! 2. The broker answers with its AP-REP (mutual authentication); the client checks it, which
//!    establishes the context, and answers with an empty message.
//! 3. The broker offers its security layers and largest message, wrapped (integrity-checked by
//!    the session key): 4 bytes.
//! 4. The client chooses "no security layer" (Kafka's connections protect themselves with TLS,
//!    not with GSS-API per message) and names no other identity to act as, wrapped.
//! 5. The broker answers with nothing: logged in.
//!
//! Tickets: with a keytab (`sasl.kerberos.keytab`), each login acquires the credentials afresh
//! from the credential cache, and the library gets a new ticket-granting ticket from the keytab
//! when the cached one has expired; so a login or a re-authentication (KIP-368) after expiry
//! goes through with new tickets, and no connection's requests fail for it. Without a keytab,
//! the tickets are whoever fills the cache's to renew (kinit, k5start, sssd): each login reads
//! the cache again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kcon_core::ConfigError;
use kcon_gssapi::{Context, Credential, CredentialSource, GssError};
use tracing::debug;

use super::{Reply, SaslClient, SaslFailure};
use crate::config::KerberosConfig;
use crate::error::AuthError;

/// The security layer RFC 4752 §3.3 numbers 1: none.
const NO_SECURITY_LAYER: u8 = 1;

/// Credential caches in memory, one per pool that logs in with a keytab: named apart within
/// the process.
static NEXT_CACHE: AtomicU64 = AtomicU64::new(0);

/// Whose credentials, and for which service: the pool's GSSAPI settings, checked.
#[derive(Debug)]
pub(crate) struct Kerberos {
    service: String,
    principal: Option<String>,
    keytab: Option<PathBuf>,
    ccache: Option<String>,
}

impl Kerberos {
    /// The settings of `config`; a keytab that cannot be read is refused here, naming the
    /// property, rather than at the first login.
    pub(crate) fn from_config(config: &KerberosConfig) -> Result<Arc<Kerberos>, ConfigError> {
        if let Some(keytab) = &config.keytab
            && let Err(e) = std::fs::File::open(keytab)
        {
            return Err(ConfigError::unusable(
                "sasl.kerberos.keytab",
                &keytab.display().to_string(),
                format!("kcon cannot read it: {e}"),
            ));
        }
        let ccache = match (&config.ccache, &config.keytab) {
            (Some(ccache), _) => Some(ccache.clone()),
            // The keytab's tickets are this client's: kept apart from the user's own cache.
            (None, Some(_)) => Some(format!(
                "MEMORY:kcon-{}-{}",
                std::process::id(),
                NEXT_CACHE.fetch_add(1, Ordering::Relaxed)
            )),
            (None, None) => None,
        };
        Ok(Arc::new(Kerberos {
            service: config.service_name.clone(),
            principal: config.principal.clone(),
            keytab: config.keytab.clone(),
            ccache,
        }))
    }

    /// Prepares a login to the broker at `host`: credentials, then the AP-REQ. Talks to the
    /// KDC when the cache lacks a ticket, so it runs on a blocking thread.
    pub(crate) async fn start(
        self: &Arc<Self>,
        host: &str,
    ) -> Result<(Box<dyn SaslClient>, Vec<u8>), AuthError> {
        let this = Arc::clone(self);
        let host = host.to_owned();
        let (context, token) = tokio::task::spawn_blocking(move || this.initiate(&host))
            .await
            .map_err(|e| AuthError::Kerberos(format!("the login's thread ended: {e}")))?
            .map_err(|e| AuthError::Kerberos(e.to_string()))?;
        Ok((Box::new(Establishing(context)), token))
    }

    fn initiate(&self, host: &str) -> Result<(Context, Vec<u8>), GssError> {
        let credential = Credential::acquire(&CredentialSource {
            principal: self.principal.as_deref(),
            keytab: self.keytab.as_deref(),
            ccache: self.ccache.as_deref(),
        })?;
        debug!(
            principal = credential.principal().as_deref().unwrap_or("?"),
            lifetime_s = credential.lifetime().map(|l| l.as_secs()),
            target = %format_args!("{}@{host}", self.service),
            "Kerberos credentials"
        );
        Context::initiate(credential, &self.service, host)
    }
}

/// Steps 1–2: the context is being established.
struct Establishing(Context);

impl SaslClient for Establishing {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        let mut context = self.0;
        let token = context
            .step(challenge)
            .map_err(|e| SaslFailure::Protocol(format!("the broker's Kerberos answer: {e}")))?;
        if context.is_complete() {
            // Empty when the broker's AP-REP closed it, as with mutual authentication.
            Ok(Reply::Send(token, Box::new(SecurityLayer(context))))
        } else {
            Ok(Reply::Send(token, Box::new(Establishing(context))))
        }
    }
}

/// Steps 3–4: the broker's offer of security layers.
struct SecurityLayer(Context);

impl SaslClient for SecurityLayer {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        let mut context = self.0;
        let offer = context.unwrap(challenge).map_err(|e| {
            SaslFailure::Protocol(format!("the broker's security layer offer: {e}"))
        })?;
        let answer = choose_layer(&offer)?;
        let wrapped = context
            .wrap(&answer, false)
            .map_err(|e| SaslFailure::Protocol(format!("wrapping the security layer: {e}")))?;
        Ok(Reply::Send(wrapped, Box::new(Chosen)))
    }
}

/// The answer to the broker's offer (RFC 4752 §3.1): no security layer, no largest message
/// (there are no wrapped messages to bound), and no authorization identity (the broker takes
/// the authenticated principal's).
fn choose_layer(offer: &[u8]) -> Result<[u8; 4], SaslFailure> {
    let [layers, ..] = offer else {
        return Err(SaslFailure::Protocol(
            "the broker's security layer offer is empty".to_owned(),
        ));
    };
    if offer.len() != 4 {
        return Err(SaslFailure::Protocol(format!(
            "the broker's security layer offer has {} bytes, not 4",
            offer.len()
        )));
    }
    if layers & NO_SECURITY_LAYER == 0 {
        return Err(SaslFailure::Protocol(format!(
            "the broker requires a GSS-API security layer (offer {layers:#04x}, without \
             \"none\"); kcon protects connections with TLS only: set the broker's \
             sasl.qop to auth"
        )));
    }
    Ok([NO_SECURITY_LAYER, 0, 0, 0])
}

/// Step 5: the broker's empty answer.
struct Chosen;

impl SaslClient for Chosen {
    fn receive(self: Box<Self>, challenge: &[u8]) -> Result<Reply, SaslFailure> {
        if !challenge.is_empty() {
            return Err(SaslFailure::Protocol(format!(
                "GSSAPI ends with an empty message, got {} bytes",
                challenge.len()
            )));
        }
        Ok(Reply::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_security_layer_is_chosen_when_offered() {
        assert_eq!(choose_layer(&[0x07, 0, 0x10, 0]), Ok([1, 0, 0, 0]));
        assert_eq!(choose_layer(&[0x01, 0xff, 0xff, 0xff]), Ok([1, 0, 0, 0]));
        let only_protected = choose_layer(&[0x06, 0, 0x10, 0]).unwrap_err();
        assert!(
            matches!(&only_protected, SaslFailure::Protocol(m) if m.contains("sasl.qop")),
            "{only_protected:?}"
        );
        assert!(choose_layer(&[]).is_err());
        assert!(choose_layer(&[1, 0, 0]).is_err());
        assert!(choose_layer(&[1, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn the_last_message_is_empty() {
        assert!(matches!(Box::new(Chosen).receive(b""), Ok(Reply::Done)));
        assert!(Box::new(Chosen).receive(b"x").is_err());
    }

    #[test]
    fn a_keytab_gets_a_cache_of_its_own_and_an_unreadable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keytab = dir.path().join("client.keytab");
        std::fs::write(&keytab, b"\x05\x02").unwrap();
        let config = KerberosConfig {
            keytab: Some(keytab.clone()),
            ..KerberosConfig::default()
        };
        let (a, b) = (
            Kerberos::from_config(&config).unwrap(),
            Kerberos::from_config(&config).unwrap(),
        );
        assert!(a.ccache.as_deref().unwrap().starts_with("MEMORY:kcon-"));
        assert_ne!(a.ccache, b.ccache, "each pool has its own cache");
        // A named cache is used as it is; without a keytab, the library's default.
        let named = KerberosConfig {
            ccache: Some("FILE:/run/kcon.cc".to_owned()),
            ..config.clone()
        };
        assert_eq!(
            Kerberos::from_config(&named).unwrap().ccache.as_deref(),
            Some("FILE:/run/kcon.cc")
        );
        assert_eq!(
            Kerberos::from_config(&KerberosConfig::default())
                .unwrap()
                .ccache,
            None
        );
        let missing = KerberosConfig {
            keytab: Some(dir.path().join("missing.keytab")),
            ..KerberosConfig::default()
        };
        let e = Kerberos::from_config(&missing).unwrap_err();
        assert_eq!(e.property(), "sasl.kerberos.keytab");
    }
}
