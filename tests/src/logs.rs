//! What kcon logs, captured: a `tracing` subscriber for the whole test process that writes
//! every event at INFO and above (or at the level the process first asks for), as the `fmt`
//! layer formats it, into a buffer the tests read.
//!
//! The subscriber is global, so a suite that counts log lines keeps to one test, or looks only
//! at lines naming what its test made unique (a group id, a topic).

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::filter::LevelFilter;

/// The lines logged since the process installed the subscriber.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// How many lines were logged so far: a mark for [`since`](Logs::since).
    pub fn mark(&self) -> usize {
        self.lines().len()
    }

    /// Every line logged.
    pub fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The lines logged after `mark`.
    pub fn since(&self, mark: usize) -> Vec<String> {
        self.lines().into_iter().skip(mark).collect()
    }
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber at INFO (once per process) and returns its logs.
pub fn capture() -> Logs {
    capture_at(LevelFilter::INFO)
}

/// Installs the capturing subscriber at `level` and returns its logs. The first call in a
/// process decides the level: a suite that reads DEBUG lines asks for them in every test.
pub fn capture_at(level: LevelFilter) -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let buffer = logs.0.clone();
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || Sink(buffer.clone()))
            .try_init()
            .expect("no other global subscriber in the test process");
        logs
    })
    .clone()
}
