//! A loopback TCP forwarder whose upstream can be re-pointed: a bootstrap address that keeps its
//! port while the brokers behind it change, as a DNS name or a load balancer in front of a
//! cluster does when the cluster moves to new hosts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection made to [`addr`](Forwarder::addr) to the upstream of the moment it
/// is made; a connection whose upstream refuses is closed at once. Stops on drop.
#[derive(Debug)]
pub struct Forwarder {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Listens on a free loopback port, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Forwarder {
        Forwarder::start_on("127.0.0.1", upstream).await
    }

    /// Listens on a free port of the loopback address `ip` (any of 127.0.0.0/8: an address a
    /// broker's certificate does not name), forwarding to `upstream`.
    pub async fn start_on(ip: &str, upstream: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind((ip, 0))
            .await
            .unwrap_or_else(|e| panic!("bind a port of {ip}: {e}"));
        let addr = listener.local_addr().expect("the listener's address");
        let upstream = Arc::new(Mutex::new(upstream));
        let target = upstream.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = *target.lock().unwrap_or_else(PoisonError::into_inner);
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Forwarder {
            addr,
            upstream,
            task,
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends the connections made from now on to `upstream`.
    pub fn repoint(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(PoisonError::into_inner) = upstream;
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
