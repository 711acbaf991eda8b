//! What a client received: counts, the times of the first and the last record, and the
//! exactly-once check (every partition's offsets contiguous from 0 to its end, none twice).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

/// Counts records as a client hands them to the application.
#[derive(Debug)]
pub struct Tally {
    started: SystemTime,
    first: Option<SystemTime>,
    /// When the last partition reached its end.
    last: Option<SystemTime>,
    /// Per partition: the offset it ends before, and the next offset expected.
    ends: Vec<i64>,
    next: Vec<i64>,
    /// Partitions not at their end yet.
    remaining: usize,
    records: u64,
    bytes: u64,
    /// Records at an offset below the next expected one: delivered again.
    duplicates: u64,
    /// Offsets skipped over: never delivered.
    missing: u64,
    /// Records of a partition not in the workload, or past a partition's end.
    unexpected: u64,
    /// The broker's port: the process's TCP connections to it are the client's.
    broker_port: Option<u16>,
    /// Bytes the process had sent and received on those connections when the last record came.
    wire: Option<Wire>,
}

/// TCP payload bytes on the process's connections to the broker, from the kernel's `TCP_INFO`
/// of each socket: every request and answer of the client (Fetch nearly all of them while it
/// reads), whatever the client, without a proxy in the path. Connections the client closed
/// before the last record are not counted.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    /// Bytes sent (and acknowledged by the peer: `tcpi_bytes_acked`, less the SYN).
    pub sent: u64,
    /// Bytes received (`tcpi_bytes_received`).
    pub received: u64,
    /// Connections counted.
    pub connections: u32,
}

impl Tally {
    /// Nothing received yet, from partitions ending at `ends`.
    pub fn new(started: SystemTime, ends: &[i64], bootstrap: &str) -> Tally {
        Tally {
            started,
            first: None,
            last: None,
            ends: ends.to_vec(),
            next: vec![0; ends.len()],
            remaining: ends.iter().filter(|&&e| e > 0).count(),
            records: 0,
            bytes: 0,
            duplicates: 0,
            missing: 0,
            unexpected: 0,
            broker_port: bootstrap.rsplit(':').next().and_then(|p| p.parse().ok()),
            wire: None,
        }
    }

    /// Counts one record of `partition` at `offset` with a `value_len`-byte value.
    #[inline]
    pub fn observe(&mut self, partition: i32, offset: i64, value_len: usize) {
        if self.first.is_none() {
            self.first = Some(SystemTime::now());
        }
        self.records += 1;
        self.bytes += value_len as u64;
        let p = partition as usize;
        let (Some(&end), Some(&next)) = (self.ends.get(p), self.next.get(p)) else {
            self.unexpected += 1;
            return;
        };
        if offset < next {
            self.duplicates += 1;
            return;
        }
        if offset >= end {
            self.unexpected += 1;
            return;
        }
        self.missing += (offset - next) as u64;
        self.next[p] = offset + 1;
        if offset + 1 == end {
            self.remaining -= 1;
            if self.remaining == 0 {
                self.last = Some(SystemTime::now());
                // Before the client closes its connections.
                self.wire = self.broker_port.and_then(wire_bytes);
            }
        }
    }

    /// Records received so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Every partition has reached its end.
    pub fn done(&self) -> bool {
        self.remaining == 0
    }

    /// The report line: times are nanoseconds since the Unix epoch.
    pub fn report(&self, closed: SystemTime) -> serde_json::Value {
        let ns = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        json!({
            "records": self.records,
            "bytes": self.bytes,
            "started_ns": ns(self.started),
            "first_ns": self.first.map(ns),
            "last_ns": self.last.map(ns),
            "closed_ns": ns(closed),
            "complete": self.done(),
            "duplicates": self.duplicates,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "wire_sent": self.wire.map(|w| w.sent),
            "wire_received": self.wire.map(|w| w.received),
            "wire_connections": self.wire.map(|w| w.connections),
            "exactly_once": self.done()
                && self.duplicates == 0
                && self.missing == 0
                && self.unexpected == 0,
        })
    }
}

/// The bytes sent and received on every TCP socket of this process whose peer is on
/// `port`: the process's file descriptors are listed in /proc/self/fd and each is asked for
/// its `TCP_INFO` (sockets that are not TCP refuse).
fn wire_bytes(port: u16) -> Option<Wire> {
    // `struct tcp_info` (linux/tcp.h): `tcpi_bytes_acked` at byte 120 and
    // `tcpi_bytes_received` at 128, both u64, since Linux 4.1.
    const ACKED: usize = 120;
    const RECEIVED: usize = 128;
    let mut wire = Wire {
        sent: 0,
        received: 0,
        connections: 0,
    };
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut peer_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `peer` is a writable sockaddr_storage of `peer_len` bytes.
        let got = unsafe { libc::getpeername(fd, (&raw mut peer).cast(), &mut peer_len) };
        if got != 0 {
            continue;
        }
        let peer_port = match i32::from(peer.ss_family) {
            libc::AF_INET => {
                // SAFETY: the family says the storage holds a sockaddr_in.
                let a: &libc::sockaddr_in = unsafe { &*(&raw const peer).cast() };
                u16::from_be(a.sin_port)
            }
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
                let a: &libc::sockaddr_in6 = unsafe { &*(&raw const peer).cast() };
                u16::from_be(a.sin6_port)
            }
            _ => continue,
        };
        if peer_port != port {
            continue;
        }
        let mut info = [0u8; 256];
        let mut len = info.len() as libc::socklen_t;
        // SAFETY: `info` is a writable buffer of `len` bytes.
        let got = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if got != 0 || (len as usize) < RECEIVED + 8 {
            continue;
        }
        let read = |at: usize| u64::from_ne_bytes(info[at..at + 8].try_into().unwrap_or([0; 8]));
        // The kernel counts the acknowledged SYN of an active open as one byte acked.
        wire.sent += read(ACKED).saturating_sub(1);
        wire.received += read(RECEIVED);
        wire.connections += 1;
    }
    Some(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_offsets_are_exactly_once() {
        let mut t = Tally::new(SystemTime::now(), &[2, 1], "127.0.0.1:9092");
        t.observe(0, 0, 10);
        t.observe(1, 0, 10);
        assert!(!t.done());
        t.observe(0, 1, 10);
        assert!(t.done());
        assert_eq!(t.report(SystemTime::now())["exactly_once"], true);
    }

    #[test]
    fn duplicates_and_gaps_are_counted() {
        let mut t = Tally::new(SystemTime::now(), &[4], "127.0.0.1:9092");
        t.observe(0, 0, 1);
        t.observe(0, 0, 1);
        t.observe(0, 3, 1);
        t.observe(1, 0, 1);
        let r = t.report(SystemTime::now());
        assert_eq!(r["duplicates"], 1);
        assert_eq!(r["missing"], 2);
        assert_eq!(r["unexpected"], 1);
        assert_eq!(r["complete"], true);
        assert_eq!(r["exactly_once"], false);
    }

    #[test]
    fn wire_bytes_counts_a_connection_both_ways() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[1; 1000]).unwrap();
        let mut got = [0; 1000];
        server.read_exact(&mut got).unwrap();
        server.write_all(&[2; 300]).unwrap();
        let mut back = [0; 300];
        client.read_exact(&mut back).unwrap();
        // The peer's acknowledgement of the last bytes may lag the read: wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let w = wire_bytes(port).unwrap();
            // The server's accepted socket has the client's port as its peer, not `port`.
            assert_eq!(w.connections, 1);
            assert_eq!(w.received, 300);
            if w.sent == 1000 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "sent {}", w.sent);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
