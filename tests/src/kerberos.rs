//! GSSAPI with tickets of the realm beside `Kafka::kerberos()`: the properties that log in on
//! its `KERBEROS` listener.

use crate::kafka::{Kafka, Realm};
use crate::login::Properties;

/// The realm, checked to be the one this process's Kerberos library reads.
pub fn realm() -> Realm {
    let realm = Kafka::kerberos().realm();
    realm.assert_configured();
    realm
}

/// The KERBEROS listener's address.
pub fn listener() -> String {
    Kafka::kerberos().nodes().remove(0).listener("KERBEROS")
}

/// The properties that log in as `principal` with its keytab.
pub fn keytab_login(realm: &Realm, principal: &str) -> Properties {
    vec![
        ("security.protocol", "SASL_PLAINTEXT".to_owned()),
        ("sasl.mechanism", "GSSAPI".to_owned()),
        ("sasl.kerberos.principal", principal.to_owned()),
        (
            "sasl.kerberos.keytab",
            realm.keytab(principal).display().to_string(),
        ),
    ]
}
