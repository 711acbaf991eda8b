//! SIGINT (Ctrl-C) and SIGTERM (how systemd and Kubernetes stop a service): every
//! long-running command (`consume`, `group lag --watch`, `exporter`) waits for either, finishes
//! what it was doing and exits 0.
//!
//! The handlers are registered once, when the command starts, and stay registered: a signal
//! that comes while the command is busy is not lost (and does not kill the process) but ends
//! the next [`Shutdown::wait`] at once.

use std::pin::pin;

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::failure::Failure;

/// SIGINT and SIGTERM, registered once so that none is missed between waits.
pub(crate) struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    /// Takes both signals over from their default (ending the process).
    pub(crate) fn new() -> Result<Shutdown, Failure> {
        let register = |kind| {
            signal(kind).map_err(|e| Failure::runtime(format!("cannot handle signals: {e}")))
        };
        Ok(Shutdown {
            interrupt: register(SignalKind::interrupt())?,
            terminate: register(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal; returns at once for one that came since the last wait.
    pub(crate) async fn wait(&mut self) {
        let interrupt = pin!(self.interrupt.recv());
        let terminate = pin!(self.terminate.recv());
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
    }
}
