//! Kerberos for kcon: the few calls of the GSS-API (RFC 2743, C binding RFC 2744) that a Kafka
//! client's SASL GSSAPI login (RFC 4752) makes, over the system's MIT Kerberos library.
//!
//! The library, `libgssapi_krb5.so.2` (Debian and Ubuntu: `libgssapi-krb5-2`; Fedora and RHEL:
//! `krb5-libs`; macOS: Homebrew's `krb5`), is opened the first time a credential is asked for,
//! not linked: nothing Kerberos is needed to build, and a program built with it runs on a
//! machine without Kerberos until it logs in with GSSAPI (then the error says what is missing).
//! MIT Kerberos 1.11 or later is needed, for `gss_acquire_cred_from`.
//!
//! Kerberos itself, the library's configuration (`KRB5_CONFIG`, by default `/etc/krb5.conf`),
//! finding the KDC, the tickets' encryption and their renewal, is the library's. What kcon asks of
//! it:
//!
//! - [`Credential::acquire`]: the client's credentials, from a keytab (the library gets a
//!   ticket-granting ticket from the KDC, keeps it in the credential cache named beside, and gets
//!   a new one from the keytab when it expires) or from a credential cache filled by someone else
//!   (`kinit`, `k5start`, sssd).
//! - [`Context::initiate`] and [`Context::step`]: a security context with a service
//!   (`kafka@broker-host`), which fetches the service's ticket from the KDC.
//! - [`Context::wrap`] and [`Context::unwrap`]: the messages after it, with integrity.
//!
//! Calls that may talk to the KDC ([`Credential::acquire`], [`Context::initiate`]) block the
//! calling thread for a network round trip: an async caller runs them on a blocking thread.

use std::ffi::{CString, c_char, c_int, c_void};
use std::fmt;
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;
use std::time::Duration;

/// The names the library is looked for under, in order.
const LIBRARY_NAMES: &[&str] = &[
    "libgssapi_krb5.so.2",
    "libgssapi_krb5.so",
    "libgssapi_krb5.2.2.dylib",
    "libgssapi_krb5.dylib",
];

#[repr(C)]
struct BufferDesc {
    length: usize,
    value: *mut c_void,
}

impl BufferDesc {
    fn empty() -> BufferDesc {
        BufferDesc {
            length: 0,
            value: ptr::null_mut(),
        }
    }

    /// A descriptor of `bytes`, which the library only reads.
    fn of(bytes: &[u8]) -> BufferDesc {
        BufferDesc {
            length: bytes.len(),
            value: bytes.as_ptr() as *mut c_void,
        }
    }
}

#[repr(C)]
struct OidDesc {
    length: u32,
    elements: *const c_void,
}

// SAFETY: an OID descriptor points at static bytes that nothing writes.
unsafe impl Sync for OidDesc {}

impl OidDesc {
    const fn of(der: &'static [u8]) -> OidDesc {
        OidDesc {
            length: der.len() as u32,
            elements: der.as_ptr() as *const c_void,
        }
    }
}

/// GSS_C_NT_HOSTBASED_SERVICE, 1.2.840.113554.1.2.1.4: a name `service@host`.
static NT_HOSTBASED_SERVICE: OidDesc =
    OidDesc::of(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x01, 0x04]);
/// GSS_KRB5_NT_PRINCIPAL_NAME, 1.2.840.113554.1.2.2.1: a Kerberos principal, `name@REALM`.
static NT_KRB5_PRINCIPAL: OidDesc =
    OidDesc::of(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01]);
/// The Kerberos V5 mechanism, 1.2.840.113554.1.2.2.
static MECH_KRB5: OidDesc = OidDesc::of(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02]);

#[repr(C)]
struct KeyValue {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: u32,
    elements: *const KeyValue,
}

type Name = *mut c_void;
type Cred = *mut c_void;
type Ctx = *mut c_void;

const GSS_C_INITIATE: c_int = 1;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
const GSS_C_MUTUAL_FLAG: u32 = 2;
const GSS_C_CONF_FLAG: u32 = 16;
const GSS_C_INTEG_FLAG: u32 = 32;
const GSS_S_COMPLETE: u32 = 0;
const GSS_S_CONTINUE_NEEDED: u32 = 1;
/// The calling and routine error fields of a major status; the rest are informatory.
const GSS_ERROR_MASK: u32 = 0xffff_0000;
const GSS_S_FAILURE: u32 = 13 << 16;
const GSS_C_INDEFINITE: u32 = u32::MAX;

/// The functions used, resolved once from the library, which is kept loaded for the process.
struct Api {
    import_name:
        unsafe extern "C" fn(*mut u32, *const BufferDesc, *const OidDesc, *mut Name) -> u32,
    release_name: unsafe extern "C" fn(*mut u32, *mut Name) -> u32,
    display_name: unsafe extern "C" fn(*mut u32, Name, *mut BufferDesc, *mut *const OidDesc) -> u32,
    acquire_cred_from: unsafe extern "C" fn(
        *mut u32,
        Name,
        u32,
        *const c_void,
        c_int,
        *const KeyValueSet,
        *mut Cred,
        *mut *mut c_void,
        *mut u32,
    ) -> u32,
    release_cred: unsafe extern "C" fn(*mut u32, *mut Cred) -> u32,
    inquire_cred: unsafe extern "C" fn(
        *mut u32,
        Cred,
        *mut Name,
        *mut u32,
        *mut c_int,
        *mut *mut c_void,
    ) -> u32,
    init_sec_context: unsafe extern "C" fn(
        *mut u32,
        Cred,
        *mut Ctx,
        Name,
        *const OidDesc,
        u32,
        u32,
        *const c_void,
        *const BufferDesc,
        *mut *const OidDesc,
        *mut BufferDesc,
        *mut u32,
        *mut u32,
    ) -> u32,
    delete_sec_context: unsafe extern "C" fn(*mut u32, *mut Ctx, *mut BufferDesc) -> u32,
    wrap: unsafe extern "C" fn(
        *mut u32,
        Ctx,
        c_int,
        u32,
        *const BufferDesc,
        *mut c_int,
        *mut BufferDesc,
    ) -> u32,
    unwrap: unsafe extern "C" fn(
        *mut u32,
        Ctx,
        *const BufferDesc,
        *mut BufferDesc,
        *mut c_int,
        *mut u32,
    ) -> u32,
    release_buffer: unsafe extern "C" fn(*mut u32, *mut BufferDesc) -> u32,
    display_status: unsafe extern "C" fn(
        *mut u32,
        u32,
        c_int,
        *const OidDesc,
        *mut u32,
        *mut BufferDesc,
    ) -> u32,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// The library's functions, loading it at the first call; the reason when it cannot be loaded.
fn api() -> Result<&'static Api, GssError> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|reason| GssError::unavailable(reason.clone()))
}

fn load() -> Result<Api, String> {
    let mut tried = Vec::new();
    for name in LIBRARY_NAMES {
        // SAFETY: loading runs the library's initialisers; MIT Kerberos's only set up its
        // error tables and mutexes, and are safe to run on any thread at any time.
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => {
                // The library stays loaded for the life of the process: the functions resolved
                // below are called from any thread at any time, and unloading Kerberos (whose
                // plugins stay loaded) is not something its authors support.
                let library: &'static libloading::Library = Box::leak(Box::new(library));
                return resolve(library).map_err(|e| format!("{name}: {e}"));
            }
            Err(e) => tried.push(format!("{name} ({e})")),
        }
    }
    Err(format!(
        "GSSAPI needs MIT Kerberos's GSS-API library, found under none of its names: {}; install \
         it (Debian and Ubuntu: libgssapi-krb5-2; Fedora and RHEL: krb5-libs)",
        tried.join(", ")
    ))
}

fn resolve(library: &'static libloading::Library) -> Result<Api, libloading::Error> {
    /// A function of the library, by its C name.
    macro_rules! function {
        ($name:literal) => {
            // SAFETY: the field's type is the function's C prototype in RFC 2744 (and MIT's
            // gssapi_ext.h for gss_acquire_cred_from), with every pointer argument passed as a
            // pointer of the same layout.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }?
        };
    }
    Ok(Api {
        import_name: function!("gss_import_name"),
        release_name: function!("gss_release_name"),
        display_name: function!("gss_display_name"),
        acquire_cred_from: function!("gss_acquire_cred_from"),
        release_cred: function!("gss_release_cred"),
        inquire_cred: function!("gss_inquire_cred"),
        init_sec_context: function!("gss_init_sec_context"),
        delete_sec_context: function!("gss_delete_sec_context"),
        wrap: function!("gss_wrap"),
        unwrap: function!("gss_unwrap"),
        release_buffer: function!("gss_release_buffer"),
        display_status: function!("gss_display_status"),
    })
}

impl Api {
    /// The bytes of a buffer the library allocated, which is released.
    fn take(&self, buffer: &mut BufferDesc) -> Vec<u8> {
        let bytes = if buffer.value.is_null() || buffer.length == 0 {
            Vec::new()
        } else {
            // SAFETY: the library filled `buffer` with `length` readable bytes at `value`.
            unsafe { std::slice::from_raw_parts(buffer.value as *const u8, buffer.length) }.to_vec()
        };
        let mut minor = 0;
        // SAFETY: `buffer` is one the library allocated (or empty, which it ignores).
        unsafe { (self.release_buffer)(&mut minor, buffer) };
        bytes
    }

    /// The library's words for a status code of one kind.
    fn status_text(&self, code: u32, kind: c_int) -> Vec<String> {
        let mut texts = Vec::new();
        let mut context = 0u32;
        // At most a handful of messages per code: a misbehaving library cannot loop us.
        for _ in 0..8 {
            let (mut minor, mut buffer) = (0, BufferDesc::empty());
            // SAFETY: every pointer is to a live local; the mechanism OID is static.
            let major = unsafe {
                (self.display_status)(
                    &mut minor,
                    code,
                    kind,
                    &MECH_KRB5,
                    &mut context,
                    &mut buffer,
                )
            };
            if major & GSS_ERROR_MASK != 0 {
                break;
            }
            let text = String::from_utf8_lossy(&self.take(&mut buffer))
                .trim()
                .to_owned();
            if !text.is_empty() {
                texts.push(text);
            }
            if context == 0 {
                break;
            }
        }
        texts
    }

    fn import_name(
        &'static self,
        name: &str,
        kind: &'static OidDesc,
    ) -> Result<OwnedName, GssError> {
        let buffer = BufferDesc::of(name.as_bytes());
        let (mut minor, mut out): (u32, Name) = (0, ptr::null_mut());
        // SAFETY: the buffer points at `name`, alive for the call, which the library copies.
        let major = unsafe { (self.import_name)(&mut minor, &buffer, kind, &mut out) };
        self.check("gss_import_name", major, minor)?;
        Ok(OwnedName {
            api: self,
            raw: out,
        })
    }

    fn check(&self, operation: &'static str, major: u32, minor: u32) -> Result<(), GssError> {
        if major & GSS_ERROR_MASK == 0 {
            return Ok(());
        }
        let majors = self.status_text(major, GSS_C_GSS_CODE);
        let minors = if minor != 0 {
            self.status_text(minor, GSS_C_MECH_CODE)
        } else {
            Vec::new()
        };
        // "Unspecified GSS failure" says only that the mechanism's code says more: then that
        // alone.
        let message = if major & GSS_ERROR_MASK == GSS_S_FAILURE && !minors.is_empty() {
            minors.join("; ")
        } else if minors.is_empty() {
            majors.join("; ")
        } else {
            format!("{} ({})", majors.join("; "), minors.join("; "))
        };
        Err(GssError {
            operation,
            major,
            minor,
            message,
        })
    }
}

/// A failed GSS-API call: the call, its status codes and the library's words for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssError {
    operation: &'static str,
    major: u32,
    minor: u32,
    message: String,
}

impl GssError {
    fn unavailable(reason: String) -> GssError {
        GssError {
            operation: "loading the GSS-API library",
            major: GSS_S_FAILURE,
            minor: 0,
            message: reason,
        }
    }

    /// The library's words for the failure: Kerberos's own, such as `Client 'x@REALM' not
    /// found in Kerberos database` (an answer of the KDC) or `No Kerberos credentials
    /// available`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The GSS-API function that failed.
    pub fn operation(&self) -> &str {
        self.operation
    }

    /// The major status (RFC 2744 §3.9.1).
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The mechanism's minor status: a Kerberos error code (`com_err`), 0 when none.
    pub fn minor(&self) -> u32 {
        self.minor
    }
}

impl fmt::Display for GssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)
    }
}

impl std::error::Error for GssError {}

/// A name the library allocated, released on drop.
struct OwnedName {
    api: &'static Api,
    raw: Name,
}

impl OwnedName {
    fn display(&self) -> Option<String> {
        let (mut minor, mut buffer) = (0, BufferDesc::empty());
        // SAFETY: `raw` is a live name; the type OID out-pointer may be null.
        let major =
            unsafe { (self.api.display_name)(&mut minor, self.raw, &mut buffer, ptr::null_mut()) };
        if major & GSS_ERROR_MASK != 0 {
            return None;
        }
        Some(String::from_utf8_lossy(&self.api.take(&mut buffer)).into_owned())
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            let mut minor = 0;
            // SAFETY: a name from gss_import_name or gss_inquire_cred, released once.
            unsafe { (self.api.release_name)(&mut minor, &mut self.raw) };
        }
    }
}

/// Where a client's Kerberos credentials come from.
#[derive(Debug, Clone, Copy, Default)]
pub struct CredentialSource<'a> {
    /// The client's principal (`name@REALM`, or `name` in the default realm). `None`: the
    /// credential cache's, or the keytab's first.
    pub principal: Option<&'a str>,
    /// A keytab holding the principal's keys: the library gets tickets with them, and new ones
    /// when those expire.
    pub keytab: Option<&'a Path>,
    /// The credential cache (`FILE:/path`, `MEMORY:name`, `KEYRING:...`, `DIR:...`): with a
    /// keytab, where its tickets are kept; without, where tickets put there by someone else are
    /// read. `None`: the library's default (`KRB5CCNAME`, or its configured default).
    pub ccache: Option<&'a str>,
}

/// A client's credentials, ready to start security contexts.
pub struct Credential {
    api: &'static Api,
    raw: Cred,
    lifetime: Option<Duration>,
}

// SAFETY: MIT Kerberos's credential handles are not tied to the thread that made them, and
// `Credential` gives no shared access (it is not `Sync`): one thread uses it at a time.
unsafe impl Send for Credential {}

impl Credential {
    /// The client's credentials from `source`. May ask the KDC for a ticket-granting ticket
    /// (with a keytab whose tickets in the cache are missing or expired): blocks for that.
    pub fn acquire(source: &CredentialSource<'_>) -> Result<Credential, GssError> {
        let api = api()?;
        let name = source
            .principal
            .map(|p| api.import_name(p, &NT_KRB5_PRINCIPAL))
            .transpose()?;
        let keytab = source
            .keytab
            .map(|p| c_string("the keytab's path", &p.to_string_lossy()))
            .transpose()?;
        let ccache = source
            .ccache
            .map(|c| c_string("the credential cache's name", c))
            .transpose()?;
        let mut elements = Vec::new();
        if let Some(keytab) = &keytab {
            elements.push(KeyValue {
                key: c"client_keytab".as_ptr(),
                value: keytab.as_ptr(),
            });
        }
        if let Some(ccache) = &ccache {
            elements.push(KeyValue {
                key: c"ccache".as_ptr(),
                value: ccache.as_ptr(),
            });
        }
        let store = KeyValueSet {
            count: elements.len() as u32,
            elements: elements.as_ptr(),
        };
        let (mut minor, mut raw, mut seconds): (u32, Cred, u32) = (0, ptr::null_mut(), 0);
        // SAFETY: the name (or null: the default), the store and its strings are alive for the
        // call; no mechanism set is asked for back.
        let major = unsafe {
            (api.acquire_cred_from)(
                &mut minor,
                name.as_ref().map_or(ptr::null_mut(), |n| n.raw),
                GSS_C_INDEFINITE,
                ptr::null(),
                GSS_C_INITIATE,
                if elements.is_empty() {
                    ptr::null()
                } else {
                    &store
                },
                &mut raw,
                ptr::null_mut(),
                &mut seconds,
            )
        };
        api.check("gss_acquire_cred_from", major, minor)?;
        Ok(Credential {
            api,
            raw,
            lifetime: (seconds != GSS_C_INDEFINITE).then(|| Duration::from_secs(seconds.into())),
        })
    }

    /// How long the credentials stay valid, as the library said when they were acquired.
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// The principal the credentials are for (`name@REALM`).
    pub fn principal(&self) -> Option<String> {
        let (mut minor, mut name): (u32, Name) = (0, ptr::null_mut());
        // SAFETY: `raw` is live; only the name is asked for (the other out-pointers are null).
        let major = unsafe {
            (self.api.inquire_cred)(
                &mut minor,
                self.raw,
                &mut name,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        if major & GSS_ERROR_MASK != 0 {
            return None;
        }
        OwnedName {
            api: self.api,
            raw: name,
        }
        .display()
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: a handle from gss_acquire_cred_from, released once.
        unsafe { (self.api.release_cred)(&mut minor, &mut self.raw) };
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn c_string(what: &'static str, value: &str) -> Result<CString, GssError> {
    CString::new(value).map_err(|_| GssError {
        operation: "gss_acquire_cred_from",
        major: GSS_S_FAILURE,
        minor: 0,
        message: format!("{what} contains a NUL byte"),
    })
}

/// A security context being established with a service, or established.
pub struct Context {
    api: &'static Api,
    raw: Ctx,
    target: OwnedName,
    credential: Credential,
    complete: bool,
}

// SAFETY: as for `Credential`: MIT Kerberos's context handles move between threads, and
// `Context` is used by one at a time (`&mut self` for every call that changes it).
unsafe impl Send for Context {}

impl Context {
    /// Starts a context with `service@host` (Kafka: `sasl.kerberos.service.name` at the
    /// broker's host name), with mutual authentication, integrity and confidentiality asked
    /// for. Returns the context and the first token for the service. Fetches the service's
    /// ticket from the KDC unless the credential cache has it: blocks for that.
    pub fn initiate(
        credential: Credential,
        service: &str,
        host: &str,
    ) -> Result<(Context, Vec<u8>), GssError> {
        let api = credential.api;
        let target = api.import_name(&format!("{service}@{host}"), &NT_HOSTBASED_SERVICE)?;
        let mut context = Context {
            api,
            raw: ptr::null_mut(),
            target,
            credential,
            complete: false,
        };
        let token = context.init(None)?;
        Ok((context, token))
    }

    /// The service's token in, the next token for it out (empty when there is none). Once
    /// [`is_complete`](Context::is_complete), the context is established.
    pub fn step(&mut self, token: &[u8]) -> Result<Vec<u8>, GssError> {
        if self.complete {
            return Err(self.misuse("the context is already established"));
        }
        self.init(Some(token))
    }

    /// Whether the context is established.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    fn init(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, GssError> {
        let input = input.map(BufferDesc::of);
        let (mut minor, mut output, mut flags) = (0, BufferDesc::empty(), 0u32);
        // SAFETY: the credential, target name and context handle are live (the context null
        // at the first call, which the library then creates); the input buffer points at the
        // caller's bytes for the call; the actual-mechanism and time out-pointers are null.
        let major = unsafe {
            (self.api.init_sec_context)(
                &mut minor,
                self.credential.raw,
                &mut self.raw,
                self.target.raw,
                &MECH_KRB5,
                GSS_C_MUTUAL_FLAG | GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG,
                0,
                ptr::null(),
                input
                    .as_ref()
                    .map_or(ptr::null(), |b| b as *const BufferDesc),
                ptr::null_mut(),
                &mut output,
                &mut flags,
                ptr::null_mut(),
            )
        };
        let token = self.api.take(&mut output);
        self.api.check("gss_init_sec_context", major, minor)?;
        match major & !GSS_ERROR_MASK & 0xffff {
            // Supplementary bits (duplicate or old token) are errors for the initiator too.
            GSS_S_COMPLETE => self.complete = true,
            GSS_S_CONTINUE_NEEDED => {}
            other => {
                return Err(self.misuse(&format!("unexpected status {other:#x}")));
            }
        }
        if self.complete && flags & GSS_C_MUTUAL_FLAG == 0 {
            return Err(
                self.misuse("the service did not authenticate itself (no mutual authentication)")
            );
        }
        Ok(token)
    }

    /// `message` with an integrity check, and encrypted when `encrypt`.
    pub fn wrap(&mut self, message: &[u8], encrypt: bool) -> Result<Vec<u8>, GssError> {
        if !self.complete {
            return Err(self.misuse("the context is not established"));
        }
        let input = BufferDesc::of(message);
        let (mut minor, mut output, mut conf) = (0, BufferDesc::empty(), 0);
        // SAFETY: the context is established and live; the input points at `message` for the
        // call.
        let major = unsafe {
            (self.api.wrap)(
                &mut minor,
                self.raw,
                c_int::from(encrypt),
                0,
                &input,
                &mut conf,
                &mut output,
            )
        };
        let wrapped = self.api.take(&mut output);
        self.api.check("gss_wrap", major, minor)?;
        Ok(wrapped)
    }

    /// The message inside `token`, its integrity checked (and decrypted).
    pub fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, GssError> {
        if !self.complete {
            return Err(self.misuse("the context is not established"));
        }
        let input = BufferDesc::of(token);
        let (mut minor, mut output, mut conf, mut qop) = (0, BufferDesc::empty(), 0, 0u32);
        // SAFETY: as in `wrap`.
        let major = unsafe {
            (self.api.unwrap)(
                &mut minor,
                self.raw,
                &input,
                &mut output,
                &mut conf,
                &mut qop,
            )
        };
        let message = self.api.take(&mut output);
        self.api.check("gss_unwrap", major, minor)?;
        Ok(message)
    }

    /// The lifetime of the credentials the context was started with.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    fn misuse(&self, what: &str) -> GssError {
        GssError {
            operation: "gss_init_sec_context",
            major: GSS_S_FAILURE,
            minor: 0,
            message: what.to_owned(),
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            let mut minor = 0;
            // SAFETY: a context the library created, deleted once; no output token wanted.
            unsafe { (self.api.delete_sec_context)(&mut minor, &mut self.raw, ptr::null_mut()) };
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_loads_and_words_its_failures() {
        // A keytab that does not exist: the library must say so, in words.
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.keytab");
        let ccache = format!("FILE:{}", dir.path().join("cc").display());
        let e = Credential::acquire(&CredentialSource {
            principal: Some("nobody@KCON.INVALID"),
            keytab: Some(&missing),
            ccache: Some(&ccache),
        })
        .unwrap_err();
        assert_eq!(e.operation(), "gss_acquire_cred_from");
        assert_ne!(e.major() & GSS_ERROR_MASK, 0, "{e:?}");
        assert!(!e.message().is_empty(), "{e:?}");
        assert!(e.to_string().starts_with("gss_acquire_cred_from: "), "{e}");
    }

    #[test]
    fn a_nul_in_a_path_is_refused_before_the_library_sees_it() {
        let e = Credential::acquire(&CredentialSource {
            principal: None,
            keytab: None,
            ccache: Some("FILE:/tmp/a\0b"),
        })
        .unwrap_err();
        assert!(e.message().contains("NUL"), "{e}");
    }

    #[test]
    fn an_empty_buffer_reads_as_no_bytes() {
        let api = api().unwrap();
        assert!(api.take(&mut BufferDesc::empty()).is_empty());
        assert!(!api.status_text(GSS_S_FAILURE, GSS_C_GSS_CODE).is_empty());
    }
}
