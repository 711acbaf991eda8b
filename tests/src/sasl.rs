//! A Tansu broker that requires SASL (SCRAM-SHA-256 and -512), with users made for the test.
//!
//! Tansu keeps SCRAM credentials in its storage and creates them with
//! AlterUserScramCredentials, which needs an authenticated connection once authentication is
//! on. So (DESIGN.md, "The brokers"), with the Tansu built with SQLite storage: start it without
//! `--authentication` on a fresh database file, create the users with `tansu user create`,
//! stop it, and start it again on the same file with `--authentication`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kcon_pool::PoolConfig;
use tempfile::TempDir;

use crate::tls::{ClientAuth, Pki, Server, free_addr, installed_extra, socat};

/// A user of a [`ScramTansu`].
#[derive(Debug, Clone, Copy)]
pub struct User {
    /// The name.
    pub name: &'static str,
    /// The password.
    pub password: &'static str,
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`: the mechanism its credential is for.
    pub mechanism: &'static str,
}

/// A user whose credential is for SCRAM-SHA-256.
pub const SHA256_USER: User = User {
    name: "alice",
    password: "alice-secret, with = and ,",
    mechanism: "SCRAM-SHA-256",
};

/// A user whose credential is for SCRAM-SHA-512.
///
/// A plain name: Tansu 0.6.0 does not undo RFC 5802's escaping of `=` and `,` in user names
/// (measured: `bob=b,c`, sent as `bob=3Db=2Cc` as the RFC says, is an `unknown-user`).
pub const SHA512_USER: User = User {
    name: "bob",
    password: "bob-secret",
    mechanism: "SCRAM-SHA-512",
};

/// The Tansu built with SQLite storage, or a panic saying how to build it.
pub fn tansu_libsql() -> PathBuf {
    let tansu = &installed_extra().tansu_libsql;
    assert!(
        !tansu.as_os_str().is_empty(),
        "Tansu with SQLite storage is not built: run `scripts/brokers install` (it builds it \
         once into ~/.cache/kcon, which takes minutes)"
    );
    tansu.clone()
}

/// A Tansu broker with `--authentication` on, knowing [`SHA256_USER`] and [`SHA512_USER`];
/// optionally behind socat, so that it is reached over TLS. Killed on drop.
pub struct ScramTansu {
    /// The TLS terminator, if any; dropped before the broker.
    socat: Option<Server>,
    broker: Server,
    /// The SQLite file's directory; removed last.
    _dir: TempDir,
}

impl ScramTansu {
    /// Starts it on a free port, reached in plaintext (SASL_PLAINTEXT).
    pub fn start() -> ScramTansu {
        ScramTansu::start_with(None)
    }

    /// Starts it behind socat with `pki`'s server certificate (SASL_SSL).
    pub fn start_behind_tls(pki: &Pki) -> ScramTansu {
        ScramTansu::start_with(Some(pki))
    }

    fn start_with(pki: Option<&Pki>) -> ScramTansu {
        let tansu = tansu_libsql();
        let dir = tempfile::Builder::new()
            .prefix("kcon-scram-")
            .tempdir()
            .expect("a scratch directory");
        // A relative URL: Tansu 0.6.0 drops the leading `/` of an absolute path (measured:
        // `sqlite:///tmp/x.db` opened `<cwd>/tmp/x.db`), so it runs in the directory.
        let storage = "sqlite://tansu.db";
        let mut last = String::new();
        for _ in 0..3 {
            // Without authentication, to create the users.
            let setup = free_addr();
            let mut broker = match spawn(&tansu, &dir, storage, setup, setup, false) {
                Ok(b) => b,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            for user in [SHA256_USER, SHA512_USER] {
                create_user(&tansu, setup, user);
            }
            broker.stop();
            // Then with it, on a fresh port: the credentials live in the file.
            let (listen, tls) = (free_addr(), pki.map(|_| free_addr()));
            let broker = match spawn(&tansu, &dir, storage, listen, tls.unwrap_or(listen), true) {
                Ok(b) => b,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let socat = match (pki, tls) {
                (Some(pki), Some(tls)) => {
                    match socat(tls, listen, &pki.server(), pki, ClientAuth::None) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            last = e;
                            continue;
                        }
                    }
                }
                _ => None,
            };
            return ScramTansu {
                socat,
                broker,
                _dir: dir,
            };
        }
        panic!("Tansu with SCRAM did not start: {last}");
    }

    /// The address clients dial: the TLS port if behind socat.
    pub fn addr(&self) -> SocketAddr {
        self.socat.as_ref().unwrap_or(&self.broker).addr()
    }

    /// [`addr`](ScramTansu::addr) as a bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// A pool config for `user` with its mechanism (SASL_SSL with `ca` as the trusted CA when
    /// behind socat, SASL_PLAINTEXT otherwise), and `password` instead of its own if given.
    pub fn config(&self, user: User, password: Option<&str>, ca: Option<PathBuf>) -> PoolConfig {
        let mut c = PoolConfig::default();
        c.bootstrap_servers = vec![self.bootstrap()];
        let protocol = if self.socat.is_some() {
            "SASL_SSL"
        } else {
            "SASL_PLAINTEXT"
        };
        for (k, v) in [
            ("security.protocol", protocol),
            ("sasl.mechanism", user.mechanism),
            ("sasl.username", user.name),
            ("sasl.password", password.unwrap_or(user.password)),
        ] {
            c.set(k, v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        c.ssl_ca_location = ca;
        c
    }
}

fn spawn(
    tansu: &std::path::Path,
    dir: &TempDir,
    storage: &str,
    listen: SocketAddr,
    advertised: SocketAddr,
    authentication: bool,
) -> Result<Server, String> {
    let listener = format!("tcp://{listen}");
    let advertised = format!("tcp://{advertised}");
    let mut args = vec![
        "broker",
        "--listener-url",
        &listener,
        "--advertised-listener-url",
        &advertised,
        "--storage-engine",
        storage,
    ];
    if authentication {
        args.push("--authentication");
    }
    Server::spawn(
        tansu,
        &args,
        Some(dir.path()),
        listen,
        Duration::from_secs(30),
    )
}

/// `tansu user create`: a SCRAM credential for `user`, through the broker at `broker`.
fn create_user(tansu: &std::path::Path, broker: SocketAddr, user: User) {
    let mechanism = match user.mechanism {
        "SCRAM-SHA-256" => "scram256",
        "SCRAM-SHA-512" => "scram512",
        other => panic!("no SCRAM mechanism {other}"),
    };
    let out = Command::new(tansu)
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://{broker}"),
            user.name,
            user.password,
            "--mechanism",
            mechanism,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tansu.display()));
    assert!(
        out.status.success(),
        "tansu user create {} failed: {}{}",
        user.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
