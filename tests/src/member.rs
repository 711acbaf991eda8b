//! What the test binaries that run a processor as a process of their own share
//! (`tests/src/bin/*_member.rs`): their stdout lines, which the tests that kill them read.

use std::io::Write;

/// Prints `text` as one line on stdout and flushes it at once, so that a test reading the
/// process's stdout has every line printed before the process is killed.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
