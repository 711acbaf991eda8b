//! The registry client: schemas by id, GUID or subject version, cached, with each answer
//! classified as the record's fault (permanent) or the registry's (retriable).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kcon_codec::kafka_protocol::ResponseError;
use kcon_codec::kafka_protocol::messages::ApiKey;
use kcon_codec::schema_id::SchemaRef;
use kcon_core::deserialize::DeserializeError;
use kcon_core::{Cause, ConfigError, KconError, Outcome};
use serde::Deserialize;

use crate::cache::Cache;
use crate::config::RegistryConfig;
use crate::http::{Answer, Http};

/// The most references one schema may pull in, all levels together: a registry answering a
/// reference graph without end is cut there.
pub(crate) const MAX_REFERENCES: usize = 1000;

/// A Schema Registry client: looks schemas up over its REST API and keeps what it fetched
/// (at most `max.schemas.per.subject` schemas; concurrent lookups of one schema are one
/// request). Cheap to clone: clones share the connections and the cache.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use kcon_schema_registry::{SchemaRef, SchemaRegistry};
///
/// let registry = SchemaRegistry::builder()
///     .set("schema.registry.url", "https://registry.example:8081")
///     .set("basic.auth.user.info", "user:secret")
///     .build()?;
/// let schema = registry.schema(SchemaRef::Id(42), None, None).await?;
/// println!("{:?}: {}", schema.schema_type, schema.schema);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    cache: Cache<Key, RegisteredSchema, RegistryError>,
    capacity: usize,
    requests: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Schema {
        schema: SchemaRef,
        subject: Option<String>,
        format: Option<String>,
    },
    Version {
        subject: String,
        version: i32,
        format: Option<String>,
    },
}

/// Builds a [`SchemaRegistry`] from properties (see
/// [`PROPERTIES`](crate::PROPERTIES)).
#[derive(Debug, Clone, Default)]
pub struct SchemaRegistryBuilder {
    properties: Vec<(String, String)>,
}

impl SchemaRegistryBuilder {
    /// Sets property `name` to `value`; a later setting of the same name wins.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((name.into(), value.into()));
        self
    }

    /// The client. Must be called inside a Tokio runtime only when requests are made; reads
    /// the TLS files now, so a bad one fails here naming its property. The error is the
    /// property registry's [`ConfigError`], which kcon's `Error` converts from: `?` in a
    /// function returning `kcon::Error` keeps the property it names.
    pub fn build(self) -> Result<SchemaRegistry, ConfigError> {
        let config = RegistryConfig::from_properties(&self.properties)?;
        Ok(SchemaRegistry {
            inner: Arc::new(Inner {
                http: Http::new(&config)?,
                cache: Cache::new(config.capacity),
                capacity: config.capacity,
                requests: AtomicU64::new(0),
            }),
        })
    }
}

/// A schema as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegisteredSchema {
    /// The schema's text: Avro or JSON Schema JSON, Protobuf source or (asked with
    /// `format=serialized`) a base64 `FileDescriptorProto`.
    pub schema: String,
    /// Its type (`schemaType`; absent means Avro).
    pub schema_type: SchemaType,
    /// The schemas it refers to.
    pub references: Vec<SchemaReference>,
    /// Its id, when the answer says.
    pub id: Option<u32>,
    /// Its subject, when the answer says (subject-version lookups).
    pub subject: Option<String>,
    /// Its version, when the answer says.
    pub version: Option<i32>,
}

/// A schema's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaType {
    /// Apache Avro.
    Avro,
    /// Protocol Buffers.
    Protobuf,
    /// JSON Schema.
    Json,
    /// Another type, by the name the registry gave.
    Other(String),
}

impl fmt::Display for SchemaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Protobuf => "PROTOBUF",
            SchemaType::Json => "JSON",
            SchemaType::Other(o) => o,
        })
    }
}

/// A reference from one schema to another: the name the referring schema imports it by, and
/// the subject version that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaReference {
    /// The name it is imported by (a Protobuf file name, an Avro full name, a JSON Schema URL).
    pub name: String,
    /// Its subject.
    pub subject: String,
    /// Its version.
    pub version: i32,
}

/// Why a lookup failed.
///
/// Like every error of kcon it says whose doing it was ([`cause`](RegistryError::cause)) and
/// what to do next ([`outcome`](RegistryError::outcome)), also as kcon-core's [`KconError`]
/// (whose `code` and `api`, a Kafka broker's, it never has); [`kind`](RegistryError::kind) is
/// the detail, [`status`](RegistryError::status) and
/// [`error_code`](RegistryError::error_code) the registry's own answer.
#[derive(Debug, Clone)]
pub struct RegistryError {
    kind: RegistryErrorKind,
    message: String,
    status: Option<u16>,
    error_code: Option<i64>,
}

/// What kind of failure a [`RegistryError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryErrorKind {
    /// No answer: the registry could not be reached, or did not answer in time. Retriable.
    Unreachable,
    /// The registry answered with a server error (5xx), or something that is not its JSON
    /// (a proxy's page, garbage, a 404 without the registry's error code). Retriable: the
    /// record is not at fault.
    BadAnswer,
    /// The registry refused the client: 401 or 403 (credentials), 408 or 429. Retriable: a
    /// fixed configuration or a quieter registry can read the record.
    Refused,
    /// The registry has no such schema, subject or version (404 with error code 40401, 40402
    /// or 40403). Permanent: ids are never reused, so the record will never read.
    NotFound,
    /// The registry refused the request itself (another 4xx). Permanent.
    Invalid,
}

impl RegistryError {
    fn new(kind: RegistryErrorKind, message: impl Into<String>) -> Self {
        RegistryError {
            kind,
            message: message.into(),
            status: None,
            error_code: None,
        }
    }

    /// What kind of failure.
    pub fn kind(&self) -> RegistryErrorKind {
        self.kind
    }

    /// Whether the same lookup may succeed later.
    pub fn is_retriable(&self) -> bool {
        !matches!(
            self.kind,
            RegistryErrorKind::NotFound | RegistryErrorKind::Invalid
        )
    }

    /// Whose doing it was: the network ([`Cause::Transport`]) for no answer or a 408/429, the
    /// credentials ([`Cause::Authentication`]) for a 401/403, an answer that is not the
    /// registry's JSON ([`Cause::Corrupt`]), and the registry's refusal ([`Cause::Broker`],
    /// the server's answer) for a schema it does not have or a request it will not take.
    pub fn cause(&self) -> Cause {
        match self.kind {
            RegistryErrorKind::Unreachable => Cause::Transport,
            RegistryErrorKind::BadAnswer if self.status.is_some_and(|s| s >= 500) => Cause::Broker,
            RegistryErrorKind::BadAnswer => Cause::Corrupt,
            RegistryErrorKind::Refused if matches!(self.status, Some(401 | 403)) => {
                Cause::Authentication
            }
            RegistryErrorKind::Refused => Cause::Transport,
            RegistryErrorKind::NotFound | RegistryErrorKind::Invalid => Cause::Broker,
        }
    }

    /// What to do next: [`Outcome::Retry`] when [`is_retriable`](RegistryError::is_retriable)
    /// (the record is not at fault), else [`Outcome::Fix`]: the record refers to a schema
    /// the registry will never have, or the request is wrong.
    pub fn outcome(&self) -> Outcome {
        if self.is_retriable() {
            Outcome::Retry
        } else {
            Outcome::Fix
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The registry's `error_code`, when its answer had one.
    pub fn error_code(&self) -> Option<i64> {
        self.error_code
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistryError {}

impl KconError for RegistryError {
    fn cause(&self) -> Cause {
        RegistryError::cause(self)
    }

    fn outcome(&self) -> Outcome {
        RegistryError::outcome(self)
    }

    /// None: the registry is no Kafka broker ([`RegistryError::error_code`] is its own code).
    fn code(&self) -> Option<ResponseError> {
        None
    }

    fn api(&self) -> Option<ApiKey> {
        None
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
}

impl From<RegistryError> for DeserializeError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        let base = if e.is_retriable() {
            DeserializeError::retriable("schema-registry", message)
        } else {
            DeserializeError::permanent("schema-registry", message)
        };
        base.with_source(e)
    }
}

#[derive(Deserialize)]
struct WireSchema {
    schema: Option<String>,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<WireReference>>,
    id: Option<u32>,
    subject: Option<String>,
    version: Option<i32>,
}

#[derive(Deserialize)]
struct WireReference {
    name: String,
    subject: String,
    version: i32,
}

#[derive(Deserialize)]
struct WireError {
    error_code: Option<i64>,
    message: Option<String>,
}

impl SchemaRegistry {
    /// A builder.
    pub fn builder() -> SchemaRegistryBuilder {
        SchemaRegistryBuilder::default()
    }

    /// A client of the registry at `url`, everything else by default.
    pub fn new(url: &str) -> Result<SchemaRegistry, ConfigError> {
        SchemaRegistry::builder()
            .set("schema.registry.url", url)
            .build()
    }

    /// The schema `schema` (`GET /schemas/ids/{id}` or `GET /schemas/guids/{guid}`), with the
    /// `subject` (a schema id is looked up in that subject's context) and `format` (Protobuf:
    /// `serialized` for a base64 `FileDescriptorProto`) query parameters if given.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a lookup only reads. Dropped while it loads the schema, its request is
    /// abandoned and nothing is cached; a call waiting on the same schema meanwhile loads it
    /// itself, and so does the next one.
    pub async fn schema(
        &self,
        schema: SchemaRef,
        subject: Option<&str>,
        format: Option<&str>,
    ) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let key = Key::Schema {
            schema,
            subject: subject.map(str::to_owned),
            format: format.map(str::to_owned),
        };
        self.inner
            .cache
            .get_or_load(&key, || async {
                let mut query = Query::default();
                let path = match schema {
                    SchemaRef::Id(id) => {
                        if let Some(s) = subject {
                            query.add("subject", s);
                        }
                        format!("/schemas/ids/{id}")
                    }
                    SchemaRef::Guid(_) => format!("/schemas/guids/{schema}"),
                };
                if let Some(f) = format {
                    query.add("format", f);
                }
                self.fetch(&format!("{path}{}", query.0), &format!("schema {schema}"))
                    .await
            })
            .await
    }

    /// Version `version` of `subject` (`GET /subjects/{subject}/versions/{version}`), soft-deleted
    /// versions included (`deleted=true`: a reference must still resolve after its version was
    /// deleted, as Confluent's deserializers look references up).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a lookup only reads. Dropped while it loads the schema, its request is
    /// abandoned and nothing is cached; a call waiting on the same schema meanwhile loads it
    /// itself, and so does the next one.
    pub async fn version(
        &self,
        subject: &str,
        version: i32,
        format: Option<&str>,
    ) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let key = Key::Version {
            subject: subject.to_owned(),
            version,
            format: format.map(str::to_owned),
        };
        self.inner
            .cache
            .get_or_load(&key, || async {
                let mut query = Query::default();
                query.add("deleted", "true");
                if let Some(f) = format {
                    query.add("format", f);
                }
                let path = format!(
                    "/subjects/{}/versions/{version}{}",
                    encode(subject),
                    query.0
                );
                self.fetch(&path, &format!("subject {subject} version {version}"))
                    .await
            })
            .await
    }

    /// Every schema `schema` refers to, directly or not, each once, those referred to before
    /// those referring to them: the order a parser that needs references defined first takes.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: lookups only (each as [`version`](SchemaRegistry::version)'s); the references
    /// found before the drop stay cached, and the next call finds them there.
    pub async fn references(
        &self,
        schema: &RegisteredSchema,
        format: Option<&str>,
    ) -> Result<Vec<(String, Arc<RegisteredSchema>)>, RegistryError> {
        let mut done = Vec::new();
        let mut seen = HashSet::new();
        // An explicit stack instead of recursion: a hostile registry's reference chain cannot
        // grow the call stack. Each entry: the reference, and whether its own references have
        // been pushed.
        let mut stack: Vec<(SchemaReference, Option<Arc<RegisteredSchema>>)> = schema
            .references
            .iter()
            .rev()
            .map(|r| (r.clone(), None))
            .collect();
        while let Some((reference, fetched)) = stack.pop() {
            match fetched {
                Some(s) => done.push((reference.name, s)),
                None => {
                    if !seen.insert(reference.name.clone()) {
                        continue;
                    }
                    if seen.len() > MAX_REFERENCES {
                        return Err(RegistryError::new(
                            RegistryErrorKind::Invalid,
                            format!("more than {MAX_REFERENCES} schema references"),
                        ));
                    }
                    let s = self
                        .version(&reference.subject, reference.version, format)
                        .await?;
                    let children: Vec<SchemaReference> = s
                        .references
                        .iter()
                        .filter(|r| !seen.contains(&r.name))
                        .rev()
                        .cloned()
                        .collect();
                    stack.push((reference, Some(s)));
                    stack.extend(children.into_iter().map(|r| (r, None)));
                }
            }
        }
        Ok(done)
    }

    /// How many schemas the client keeps now (at most `max.schemas.per.subject`).
    pub fn cached(&self) -> usize {
        self.inner.cache.len()
    }

    /// The most schemas the client keeps (`max.schemas.per.subject`).
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// How many requests the client has sent.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    async fn fetch(&self, path: &str, what: &str) -> Result<RegisteredSchema, RegistryError> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let answer = self.inner.http.get(path).await.map_err(|e| {
            RegistryError::new(
                RegistryErrorKind::Unreachable,
                format!("looking up {what}: {}", e.0),
            )
        })?;
        classify(answer, what)
    }
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("http", &self.inner.http)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

/// The registry's answer, as a schema or as the error it means.
fn classify(answer: Answer, what: &str) -> Result<RegisteredSchema, RegistryError> {
    let Answer { status, body, url } = answer;
    let fail = |kind, detail: String| RegistryError {
        status: Some(status),
        ..RegistryError::new(kind, format!("looking up {what} at {url}: {detail}"))
    };
    if status == 200 {
        let wire: WireSchema = serde_json::from_slice(&body).map_err(|e| {
            fail(
                RegistryErrorKind::BadAnswer,
                format!("the answer is not a schema: {e}"),
            )
        })?;
        let schema = wire.schema.ok_or_else(|| {
            fail(
                RegistryErrorKind::BadAnswer,
                "the answer has no schema".to_owned(),
            )
        })?;
        let schema_type = match wire.schema_type.as_deref() {
            None | Some("AVRO") => SchemaType::Avro,
            Some("PROTOBUF") => SchemaType::Protobuf,
            Some("JSON") => SchemaType::Json,
            Some(other) => SchemaType::Other(other.to_owned()),
        };
        return Ok(RegisteredSchema {
            schema,
            schema_type,
            references: wire
                .references
                .unwrap_or_default()
                .into_iter()
                .map(|r| SchemaReference {
                    name: r.name,
                    subject: r.subject,
                    version: r.version,
                })
                .collect(),
            id: wire.id,
            subject: wire.subject,
            version: wire.version,
        });
    }
    let error: Option<WireError> = serde_json::from_slice(&body).ok();
    let code = error.as_ref().and_then(|e| e.error_code);
    let said = error
        .as_ref()
        .and_then(|e| e.message.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let kind = match (status, code) {
        (404, Some(40401..=40403)) => RegistryErrorKind::NotFound,
        (404, _) => RegistryErrorKind::BadAnswer,
        (401 | 403 | 408 | 429, _) => RegistryErrorKind::Refused,
        (400..=499, _) => RegistryErrorKind::Invalid,
        _ => RegistryErrorKind::BadAnswer,
    };
    let code_text = code
        .map(|c| format!(" (error code {c})"))
        .unwrap_or_default();
    Err(RegistryError {
        error_code: code,
        ..fail(kind, format!("HTTP {status}{code_text}: {said}"))
    })
}

#[derive(Default)]
struct Query(String);

impl Query {
    fn add(&mut self, name: &str, value: &str) {
        self.0.push(if self.0.is_empty() { '?' } else { '&' });
        self.0.push_str(name);
        self.0.push('=');
        self.0.push_str(&encode(value));
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: Bytes::from(body.to_owned()),
            url: "http://r".to_owned(),
        }
    }

    #[test]
    fn answers_are_classified_as_the_records_fault_or_the_registrys() {
        let ok = classify(
            answer(
                200,
                r#"{"schema":"x","schemaType":"PROTOBUF","references":[{"name":"a.proto","subject":"a","version":2}]}"#,
            ),
            "schema 1",
        )
        .unwrap();
        assert_eq!(ok.schema_type, SchemaType::Protobuf);
        assert_eq!(ok.references[0].version, 2);
        assert_eq!(
            classify(answer(200, r#"{"schema":"{}"}"#), "s")
                .unwrap()
                .schema_type,
            SchemaType::Avro
        );
        let cases = [
            (
                404,
                r#"{"error_code":40403,"message":"Schema not found"}"#,
                RegistryErrorKind::NotFound,
                false,
            ),
            (
                404,
                "<html>nginx</html>",
                RegistryErrorKind::BadAnswer,
                true,
            ),
            (
                500,
                r#"{"error_code":50001}"#,
                RegistryErrorKind::BadAnswer,
                true,
            ),
            (503, "", RegistryErrorKind::BadAnswer, true),
            (
                401,
                r#"{"error_code":401}"#,
                RegistryErrorKind::Refused,
                true,
            ),
            (429, "", RegistryErrorKind::Refused, true),
            (
                422,
                r#"{"error_code":42201}"#,
                RegistryErrorKind::Invalid,
                false,
            ),
            (200, "garbage", RegistryErrorKind::BadAnswer, true),
            (200, r#"{"id":1}"#, RegistryErrorKind::BadAnswer, true),
        ];
        let causes = [
            Cause::Broker,
            Cause::Corrupt,
            Cause::Broker,
            Cause::Broker,
            Cause::Authentication,
            Cause::Transport,
            Cause::Broker,
            Cause::Corrupt,
            Cause::Corrupt,
        ];
        assert_eq!(causes.len(), cases.len());
        for ((status, body, kind, retriable), cause) in cases.into_iter().zip(causes) {
            let e = classify(answer(status, body), "schema 9").unwrap_err();
            assert_eq!(
                (e.kind(), e.is_retriable()),
                (kind, retriable),
                "{status} {body}"
            );
            let outcome = if retriable {
                Outcome::Retry
            } else {
                Outcome::Fix
            };
            let any: &dyn KconError = &e;
            assert_eq!(
                (any.cause(), any.outcome(), any.code()),
                (cause, outcome, None),
                "{status} {body}"
            );
            assert!(e.to_string().contains("schema 9"), "{e}");
            let d = DeserializeError::from(e);
            assert_eq!(d.is_retriable(), retriable);
            assert_eq!(d.kind(), "schema-registry");
        }
    }

    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(encode("a b/c-d.e_f~"), "a%20b%2Fc-d.e_f~");
        let mut q = Query::default();
        q.add("subject", "t-value");
        q.add("format", "serialized");
        assert_eq!(q.0, "?subject=t-value&format=serialized");
    }
}
