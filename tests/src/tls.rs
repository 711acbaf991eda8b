//! TLS in front of real brokers: a throwaway PKI made by the test (rcgen), socat as the TLS
//! terminator (DESIGN.md, "The brokers": Tansu 0.6.0's own `--cert/--key` cannot be used together),
//! Tansu advertising the TLS port, so that every connection a client makes goes through TLS;
//! and a Produce/Fetch round trip to run over it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use kcon_codec::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kcon_codec::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use kcon_codec::kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use kcon_codec::kafka_protocol::protocol::StrBytes;
use kcon_codec::records::{DecodeOptions, RecordBatchBuilder, RecordBatches};
use kcon_pool::{BrokerTarget, Pool, TopicScope};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

use crate::brokers::{free_port, installed, spawn_listening, spawn_tansu, unique_name};

/// A test PKI in a scratch directory: a CA, certificates it signed for the server (for
/// `localhost` and `127.0.0.1`, and one for another host) and for a client, and a second CA
/// that signed none of them. PEM files, keys in PKCS#8.
pub struct Pki {
    dir: TempDir,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl Pki {
    /// Makes the CAs and certificates.
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("kcon-pki-")
            .tempdir()
            .expect("a scratch directory");
        let ca = authority(&dir, "ca", "kcon test CA");
        authority(&dir, "other-ca", "kcon unrelated CA");
        let leaf = |name: &str, sans: &[&str], usage| {
            let key = KeyPair::generate().expect("a key");
            let mut params =
                CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    .expect("valid names");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).expect("signed by the CA");
            write(&dir, &format!("{name}.pem"), &cert.pem());
            write(&dir, &format!("{name}.key"), &key.serialize_pem());
        };
        leaf(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf(
            "elsewhere",
            &["kafka.elsewhere.invalid"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        leaf("client", &[], ExtendedKeyUsagePurpose::ClientAuth);
        Pki { dir }
    }

    /// The CA that signed every certificate here.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed none of them.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// The server's certificate, for `localhost` and `127.0.0.1`.
    pub fn server(&self) -> CertFiles {
        self.files("server")
    }

    /// A server certificate for `kafka.elsewhere.invalid` only.
    pub fn elsewhere(&self) -> CertFiles {
        self.files("elsewhere")
    }

    /// The client's certificate, for mutual TLS.
    pub fn client(&self) -> CertFiles {
        self.files("client")
    }

    /// A path in the PKI's directory, for files a test writes itself.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self, name: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// A self-signed CA, written as `<file>.pem`, returned as an issuer.
fn authority(dir: &TempDir, file: &str, name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("a key");
    let ca = CertifiedIssuer::self_signed(params, key).expect("a self-signed CA");
    write(dir, &format!("{file}.pem"), &ca.pem());
    ca
}

fn write(dir: &TempDir, name: &str, contents: &str) {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// A process that serves a TCP port, killed (by its pid) on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Runs `program` with `args` (in `dir` if given) and waits up to `within` until `addr`
    /// accepts connections. The error says why not, with the program's stderr if it exited.
    pub fn spawn(
        program: &Path,
        args: &[&str],
        dir: Option<&Path>,
        addr: SocketAddr,
        within: Duration,
    ) -> Result<Server, String> {
        let child = spawn_listening(program, args, dir, addr, within)?;
        Ok(Server { child, addr })
    }

    /// The address it serves.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the process and waits for it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's prometheus, installed by `scripts/brokers install`; panics saying so when missing.
pub fn prometheus_binary() -> PathBuf {
    let p = &installed_extra().prometheus;
    assert!(
        !p.as_os_str().is_empty(),
        "prometheus is not installed: run `scripts/brokers install` (it installs Debian's prometheus)"
    );
    p.clone()
}

/// The installed socat, or a panic saying how to install it.
pub fn socat_binary() -> PathBuf {
    let socat = &installed_extra().socat;
    assert!(
        !socat.as_os_str().is_empty(),
        "socat is not installed: run `scripts/brokers install` (it installs Debian's socat)"
    );
    socat.clone()
}

/// What `scripts/brokers paths` reports beyond [`installed`]: the TLS and SASL extras.
#[derive(Debug, Clone)]
pub struct Extras {
    /// socat, or empty when missing.
    pub socat: PathBuf,
    /// Tansu built with SQLite storage, or empty when not built.
    pub tansu_libsql: PathBuf,
    /// Debian's prometheus (the exporter's tests), or empty when missing.
    pub prometheus: PathBuf,
}

/// The extras beyond the brokers (TLS, SASL, Prometheus), read once.
pub fn installed_extra() -> &'static Extras {
    static EXTRAS: std::sync::OnceLock<Extras> = std::sync::OnceLock::new();
    EXTRAS.get_or_init(|| {
        // Runs the same script as `installed()`, which has checked that it works.
        let _ = installed();
        let script = crate::brokers::repo_root().join("scripts/brokers");
        let out = Command::new(&script)
            .arg("paths")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("`scripts/brokers paths` printed no {key}="))
        };
        Extras {
            socat: value("socat"),
            tansu_libsql: value("tansu_libsql"),
            prometheus: value("prometheus"),
        }
    })
}

/// How socat checks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client (`verify=0`).
    None,
    /// Clients must show a certificate signed by the test CA (`verify=1`, `cafile=`).
    Required,
}

/// socat terminating TLS on `listen` with `server`'s certificate, forwarding each connection
/// to `upstream` in plaintext.
pub fn socat(
    listen: SocketAddr,
    upstream: SocketAddr,
    server: &CertFiles,
    pki: &Pki,
    client_auth: ClientAuth,
) -> Result<Server, String> {
    let verify = match client_auth {
        ClientAuth::None => "verify=0".to_owned(),
        ClientAuth::Required => format!("verify=1,cafile={}", pki.ca().display()),
    };
    let accept = format!(
        "OPENSSL-LISTEN:{},bind={},reuseaddr,fork,cert={},key={},{verify}",
        listen.port(),
        listen.ip(),
        server.cert.display(),
        server.key.display(),
    );
    let connect = format!("TCP:{upstream}");
    Server::spawn(
        &socat_binary(),
        &[&accept, &connect],
        None,
        listen,
        Duration::from_secs(10),
    )
}

/// A free loopback address.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Tansu (memory storage) on a plaintext port, advertising `advertised` (the TLS port in front
/// of it).
pub fn tansu_advertising(listen: SocketAddr, advertised: SocketAddr) -> Result<Server, String> {
    let child = spawn_tansu(listen, advertised, Duration::from_secs(15))?;
    Ok(Server {
        child,
        addr: listen,
    })
}

/// Tansu behind socat: every address it advertises is the TLS port.
pub struct TlsTansu {
    /// The TLS terminator; dropped first.
    pub socat: Server,
    /// The broker.
    pub tansu: Server,
}

impl TlsTansu {
    /// Starts Tansu and socat with `server`'s certificate in front of it, retrying on fresh
    /// ports if one was taken meanwhile.
    pub fn start(pki: &Pki, server: &CertFiles, client_auth: ClientAuth) -> TlsTansu {
        let mut last = String::new();
        for _ in 0..3 {
            let (plain, tls) = (free_addr(), free_addr());
            let tansu = match tansu_advertising(plain, tls) {
                Ok(t) => t,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            match socat(tls, plain, server, pki, client_auth) {
                Ok(socat) => return TlsTansu { socat, tansu },
                Err(e) => last = e,
            }
        }
        panic!("Tansu behind socat did not start: {last}");
    }

    /// The TLS port, as `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        self.socat.addr().to_string()
    }

    /// The TLS port, as `localhost:port` (a DNS name: SNI is sent, and the name is checked).
    pub fn bootstrap_by_name(&self) -> String {
        format!("localhost:{}", self.socat.addr().port())
    }

    /// The broker's own plaintext port.
    pub fn plaintext(&self) -> SocketAddr {
        self.tansu.addr()
    }
}

/// Creates a one-partition topic, produces `n` records to it through `pool` and fetches them
/// back, checking every value; returns the topic's name. Exercises Metadata, CreateTopics,
/// Produce and Fetch over whatever `pool` is configured with.
pub async fn assert_produce_fetch_round_trip(pool: &Pool, n: usize) -> String {
    let topic = unique_name("secured");
    let name = TopicName(StrBytes::from_string(topic.clone()));
    let meta = pool
        .refresh_metadata(TopicScope::none())
        .await
        .expect("metadata");
    let id = *meta.brokers.keys().next().expect("a broker");
    // Created, and its leader ready to take records (Kafka answers CreateTopics before that).
    crate::kafka::create(
        pool,
        &[crate::kafka::NewTopic::new(&topic, 1).replication(1)],
    )
    .await;

    let values: Vec<String> = (0..n).map(|i| format!("{topic}-value-{i}")).collect();
    let mut batch = RecordBatchBuilder::new(0);
    for (i, v) in values.iter().enumerate() {
        batch.record(i as i64, Some(b"k"), Some(v.as_bytes()));
    }
    let produced = pool
        .send(
            BrokerTarget::Broker(id),
            &ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(name.clone())
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch.build().expect("a batch"))),
                        ]),
                ]),
        )
        .await
        .expect("produce");
    let p = &produced.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0), "{p:?}");

    let meta = pool
        .refresh_metadata(TopicScope::topics([topic.clone()]))
        .await
        .expect("metadata of the topic");
    let topic_id = meta
        .topic(&topic)
        .and_then(|t| t.id)
        .expect("the broker sends topic ids");
    let fetched = pool
        .send(
            BrokerTarget::Broker(id),
            &FetchRequest::default()
                .with_max_wait_ms(500)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    FetchTopic::default()
                        .with_topic(name)
                        .with_topic_id(topic_id.0.to_vec().try_into().expect("a UUID"))
                        .with_partitions(vec![
                            FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        )
        .await
        .expect("fetch");
    let part = &fetched.responses[0].partitions[0];
    assert_eq!(part.error_code, 0, "{part:?}");
    assert_eq!(part.high_watermark, n as i64);
    let records = part.records.clone().expect("records");
    let mut got = Vec::new();
    for batch in RecordBatches::new(records, DecodeOptions::default()) {
        for r in batch.expect("a valid batch").records() {
            let r = r.expect("a valid record");
            got.push(String::from_utf8(r.value().expect("a value").to_vec()).expect("UTF-8"));
        }
    }
    assert_eq!(got, values);
    topic
}
