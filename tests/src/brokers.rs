//! Real brokers for tests: Tansu processes on free loopback ports, stopped on drop.

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

/// A Tansu broker (an independent one-broker cluster with memory storage), killed on drop.
#[derive(Debug)]
pub struct Tansu {
    child: Child,
    addr: SocketAddr,
}

impl Tansu {
    /// Starts a Tansu broker on a free loopback port and waits until it accepts connections.
    pub fn start() -> Tansu {
        let mut last_error = String::new();
        for _ in 0..3 {
            match Tansu::try_start() {
                Ok(t) => return t,
                Err(e) => last_error = e,
            }
        }
        panic!("Tansu did not start: {last_error}");
    }

    fn try_start() -> Result<Tansu, String> {
        let tansu = &installed().tansu;
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", tansu.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    let _ = s.read_to_string(&mut err);
                }
                return Err(format!("tansu exited with {status}: {err}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(Tansu { child, addr });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "tansu did not accept connections on {addr} within 15 s"
        ))
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A name no other test uses: `prefix-<pid>-<counter>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
