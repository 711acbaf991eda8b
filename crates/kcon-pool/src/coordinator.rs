//! FindCoordinator on a connection: the one place any part of kcon asks a broker which broker
//! coordinates a group or a transactional id (the group member, the commit machine, the admin
//! calls and the transactional producer each call [`Connection::find_coordinator`]). The
//! request's shape and the answer's reading are kcon-core's ([`kcon_core::coordinator`]); this
//! is the sending.

use std::time::Duration;

use kcon_codec::kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
use kcon_codec::kafka_protocol::protocol::Message;
use kcon_core::coordinator::{self, FoundCoordinator};

use crate::connection::Connection;
use crate::error::{Error, Result};

impl Connection {
    /// Asks this broker for the coordinator of `key` of `key_type`
    /// ([`coordinator::GROUP`] or [`coordinator::TRANSACTION`]), waiting at most `timeout`
    /// (`None`: `request.timeout.ms`), at the highest version both sides speak. The answer's error code is in the
    /// [`FoundCoordinator`]; the `Err`s are the request's (it could not be sent or answered).
    /// A broker that speaks only v0, which knows group coordinators alone, is
    /// [`Error::Unsupported`] for a transactional id.
    ///
    /// # Cancel safety
    ///
    /// As [`send`](Connection::send)'s: it only asks.
    pub async fn find_coordinator(
        &self,
        key: &str,
        key_type: i8,
        timeout: Option<Duration>,
    ) -> Result<FoundCoordinator> {
        let v = self.version(ApiKey::FindCoordinator)?;
        if !coordinator::key_type_supported(key_type, v) {
            return Err(Error::Unsupported {
                peer: self.peer().clone(),
                api_key: ApiKey::FindCoordinator as i16,
                ours: (1, FindCoordinatorRequest::VERSIONS.max),
                theirs: self.versions().offered(ApiKey::FindCoordinator),
            });
        }
        let request = coordinator::find_coordinator_request(key, key_type, v);
        let timeout = timeout.unwrap_or(self.request_timeout());
        let answer = self.send_with_timeout(&request, timeout).await?;
        Ok(coordinator::find_coordinator_response(key, answer, v))
    }
}
