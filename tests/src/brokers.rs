//! Real brokers for tests: Tansu processes on free loopback ports, stopped on drop (and, for
//! tests of a broker going away, stopped and restarted on the same port).

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn repo_root() -> &'static Path {
    // CARGO_MANIFEST_DIR is `<root>/tests`.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
}

/// Paths of the installed brokers and peer clients, as `scripts/brokers paths` reports them.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The virtualenv's Python, which has confluent-kafka and kafka-python.
    pub python: PathBuf,
    /// The Tansu broker binary.
    pub tansu: PathBuf,
    /// librdkafka's shared library (it carries the mock cluster).
    pub librdkafka: PathBuf,
    /// Jaeger, the tracing backend the OpenTelemetry tests export to.
    pub jaeger: PathBuf,
}

/// Finds the installed brokers, or panics saying how to install them.
pub fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let script = repo_root().join("scripts/brokers");
        let out = Command::new(&script)
            .arg("paths")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "brokers are not installed (run `scripts/brokers install`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let map: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let path = |k: &str| {
            PathBuf::from(
                map.get(k)
                    .unwrap_or_else(|| panic!("`scripts/brokers paths` printed no {k}=")),
            )
        };
        Installed {
            python: path("python"),
            tansu: path("tansu"),
            librdkafka: path("librdkafka"),
            jaeger: path("jaeger"),
        }
    })
}

/// A free loopback port. The listener is closed before returning, so another process could take
/// the port in between; brokers are started with a retry for that reason.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// A listener on a free loopback port for a proxy in front of a broker that must be told the
/// proxy's address before it starts ([`Tansu::start_advertising`]), and its port. The proxy
/// keeps this listener: no other process can take the port in between.
pub async fn proxy_listener() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral loopback port");
    let port = listener
        .local_addr()
        .expect("a bound listener's address")
        .port();
    (listener, port)
}

/// A Tansu broker (an independent one-broker cluster with memory storage), killed on drop. It
/// can be stopped and restarted on the same address; a restart is an empty cluster.
#[derive(Debug)]
pub struct Tansu {
    /// `None` while stopped.
    child: Option<Child>,
    addr: SocketAddr,
    /// The address it tells clients in metadata: `addr`, or a proxy's (see
    /// [`Tansu::start_advertising`]).
    advertised: SocketAddr,
}

impl Tansu {
    /// Starts a Tansu broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> Tansu {
        Tansu::start_with(None)
    }

    /// Starts a Tansu broker on a free loopback port that advertises `127.0.0.1:advertised_port`
    /// in metadata rather than its own address: clients that bootstrap there follow the metadata
    /// to that port, so a proxy listening on it (`crate::proxy::RecordingProxy`) sees all of
    /// their traffic. [`Tansu::addr`] is the broker's own address, the proxy's upstream.
    pub fn start_advertising(advertised_port: u16) -> Tansu {
        Tansu::start_with(Some(SocketAddr::from(([127, 0, 0, 1], advertised_port))))
    }

    /// Starts on a free port (retrying on another if it was taken meanwhile), advertising
    /// `advertised` or its own address.
    fn start_with(advertised: Option<SocketAddr>) -> Tansu {
        let mut last_error = String::new();
        for _ in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let advertised = advertised.unwrap_or(addr);
            match spawn_tansu(addr, advertised, Duration::from_secs(15)) {
                Ok(child) => {
                    return Tansu {
                        child: Some(child),
                        addr,
                        advertised,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("Tansu did not start: {last_error}");
    }

    /// The address the broker advertises in metadata.
    pub fn advertised(&self) -> SocketAddr {
        self.advertised
    }

    /// Kills the broker and waits for the process to end: its sockets are closed then.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped broker again on its address, retrying for up to 15 s while the port
    /// can't be bound yet. Memory storage: it comes back as an empty cluster.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last_error = String::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match spawn_tansu(self.addr, self.advertised, left) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Tansu did not restart on {}: {last_error}", self.addr);
    }

    /// The broker's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a Tansu broker listening on `addr` and advertising `advertised` in metadata (its own
/// address, or a proxy's), and waits up to `within` until it accepts connections.
pub(crate) fn spawn_tansu(
    addr: SocketAddr,
    advertised: SocketAddr,
    within: Duration,
) -> Result<Child, String> {
    let url = format!("tcp://{addr}");
    let advertised_url = format!("tcp://{advertised}");
    spawn_listening(
        &installed().tansu,
        &[
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised_url,
        ],
        None,
        addr,
        within,
    )
}

/// Runs `program` with `args` (in `dir` if given) and waits up to `within` until `addr`
/// accepts connections. The error says why not, with the program's stderr if it exited (for
/// instance because the port was taken); a process that doesn't come up in time is killed.
pub fn spawn_listening(
    program: &Path,
    args: &[&str],
    dir: Option<&Path>,
    addr: SocketAddr,
    within: Duration,
) -> Result<Child, String> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            return Err(format!("{} exited with {status}: {err}", program.display()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // Nothing reads stderr from now on: let it go nowhere rather than fill a pipe
            // that would block the process once full.
            drop(child.stderr.take());
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!(
        "{} did not accept connections on {addr} within {within:?}",
        program.display()
    ))
}

/// A name no other test uses: `prefix-<pid>-<start>-<counter>`. The Apache Kafka clusters
/// outlive a test run (`crate::kafka`), and process ids come round again, so the name also
/// carries the time the test process first asked for one (milliseconds since the epoch, in
/// base 36): a later run never meets an earlier run's topic or group.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<String> = OnceLock::new();
    let start = START.get_or_init(|| {
        let mut ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_millis();
        let mut digits = Vec::new();
        while ms > 0 {
            digits.push(char::from_digit((ms % 36) as u32, 36).expect("a base-36 digit"));
            ms /= 36;
        }
        digits.iter().rev().collect()
    });
    format!(
        "{prefix}-{}-{start}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
