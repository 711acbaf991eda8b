//! OAUTHBEARER with tokens from the OAuth 2.0 server of `Kafka::oidc()`: the properties that
//! log in on its `OIDC` listener, and clients made with them.

use crate::kafka::Kafka;
pub use crate::login::{Properties, consumer, pool_config, producer, topic, values};

/// The OIDC listener and the properties that log in on it as OAuth client `id`.
pub fn login(id: &str, secret: &str, token_endpoint: &str) -> (String, Properties) {
    let node = Kafka::oidc().nodes().remove(0);
    (
        node.listener("OIDC"),
        vec![
            ("security.protocol", "SASL_PLAINTEXT".to_owned()),
            ("sasl.mechanism", "OAUTHBEARER".to_owned()),
            (
                "sasl.oauthbearer.token.endpoint.url",
                token_endpoint.to_owned(),
            ),
            (
                "sasl.oauthbearer.client.credentials.client.id",
                id.to_owned(),
            ),
            (
                "sasl.oauthbearer.client.credentials.client.secret",
                secret.to_owned(),
            ),
            ("sasl.oauthbearer.scope", "kafka".to_owned()),
        ],
    )
}
