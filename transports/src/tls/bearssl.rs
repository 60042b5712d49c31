//! What `BearSSL::WiFiClientSecure` on an ESP8266 sends and spends, as constants and pure
//! functions: no I/O.
//!
//! Read from the ESP8266 Arduino core 3.1.2 (the core platformio's espressif8266@4.2.1 ships),
//! `libraries/ESP8266WiFi/src/WiFiClientSecureBearSSL.cpp` (below, "the core"), and from the
//! BearSSL fork it links (earlephilhower/bearssl-esp8266 at the core's submodule commit
//! b024386), `src/ssl/ssl_hs_client.t0` and `src/ssl/ssl_engine.c` (below, "BearSSL"). Each
//! item names the file and function it comes from; none of their code is copied.
//!
//! - The suites the client offers, in its order ([`DEFAULT_CLIENT_SUITES`]), and which of
//!   them rustls can also do ([`RUSTLS_TLS12_SUITES`], [`first_shared_suite`]).
//! - Its I/O buffers ([`IoBuffers`]) and the Maximum Fragment Length they make BearSSL ask for
//!   ([`IoBuffers::max_fragment_request`]: 512 B by default), and the heap a connection takes
//!   ([`connection_heap`]).
//! - The ClientHello it writes ([`client_hello`]) and the hand-built one `probeMaxFragmentLength`
//!   sends ([`mfln_probe_client_hello`]), and how the core reads the probe's answer
//!   ([`mfln_probe_answer`]).
//! - The board's handshake CPU time, the delay a device end waits ([`handshake_cpu`]).
//!
//! Sessions: the client resumes by session id only (`BearSSL::Session` and `setSession`, the
//! parameters saved in `stop()`); its ClientHello never carries the session_ticket extension,
//! so it never receives a ticket ([`SESSION_TICKETS`]).

use std::time::Duration;

use thiserror::Error;

use super::records::{extension, HelloError, MaxFragmentLength, ServerHello, RECORD_HEADER_LEN};

/// A cipher suite: its IANA id and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipherSuite {
    /// The id on the wire.
    pub id: u16,
    /// The IANA name.
    pub name: &'static str,
}

const fn suite(id: u16, name: &'static str) -> CipherSuite {
    CipherSuite { id, name }
}

/// The suites the client offers by default, in its order of preference: the core's
/// `suites_P` (used by `_connectSSL` through `br_ssl_client_base_init` when no `setCiphers`
/// was called), BearSSL's "full" client profile, 45 suites. The core's `BEARSSL_SSL_BASIC`
/// build (an Arduino IDE menu option, not platformio's default) keeps only the RSA CBC ones.
pub const DEFAULT_CLIENT_SUITES: [CipherSuite; 45] = [
    suite(0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    suite(0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    suite(0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    suite(0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    suite(0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
    suite(0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
    suite(0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    suite(0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    suite(0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    suite(0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    suite(0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    suite(0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    suite(0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    suite(0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    suite(0xC02D, "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC031, "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256"),
    suite(0xC02E, "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC032, "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC025, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256"),
    suite(0xC029, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256"),
    suite(0xC026, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384"),
    suite(0xC02A, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384"),
    suite(0xC004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA"),
    suite(0xC00E, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"),
    suite(0xC005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA"),
    suite(0xC00F, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"),
    suite(0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    suite(0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    suite(0xC09C, "TLS_RSA_WITH_AES_128_CCM"),
    suite(0xC09D, "TLS_RSA_WITH_AES_256_CCM"),
    suite(0xC0A0, "TLS_RSA_WITH_AES_128_CCM_8"),
    suite(0xC0A1, "TLS_RSA_WITH_AES_256_CCM_8"),
    suite(0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    suite(0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    suite(0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    suite(0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    suite(0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    suite(0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    suite(0xC003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    suite(0xC00D, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA"),
    suite(0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
];

/// The TLS 1.2 suites rustls 0.23 can negotiate, in rustls's own order of preference (as its
/// ClientHello lists them): ECDHE with ECDSA or RSA, AES-256-GCM, AES-128-GCM and
/// ChaCha20-Poly1305.
pub const RUSTLS_TLS12_SUITES: [u16; 6] = [0xC02C, 0xC02B, 0xCCA9, 0xC030, 0xC02F, 0xCCA8];

/// The first of the board's default suites (in its order) that a server doing `server_suites`
/// also does: what a server that follows the client's preference picks, as rustls does by
/// default (`ServerConfig::ignore_client_order` false). With an ECDSA certificate that is
/// ChaCha20-Poly1305 (0xCCA9), with an RSA one 0xCCA8: 21 B per record, not AES-GCM's 29 B.
pub fn first_shared_suite(server_suites: &[u16]) -> Option<CipherSuite> {
    DEFAULT_CLIENT_SUITES
        .into_iter()
        .find(|s| server_suites.contains(&s.id))
}

/// Whether the board's client can receive a session ticket: no. BearSSL's `write-ClientHello`
/// (ssl_hs_client.t0) writes no session_ticket extension (35), and the core saves and
/// restores only `br_ssl_session_parameters` (session id, version, suite, master secret):
/// `WiFiClientSecureCtx::stop` and `_connectSSL`.
pub const SESSION_TICKETS: bool = false;

/// Bytes BearSSL needs in the input buffer beyond the largest record body it accepts
/// (`MAX_IN_OVERHEAD` in BearSSL's ssl_engine.c, repeated in the core's `setBufferSizes`).
pub const RECV_OVERHEAD: usize = 325;

/// Bytes BearSSL needs in the output buffer beyond the largest record body it sends
/// (`MAX_OUT_OVERHEAD`, same places).
pub const XMIT_OVERHEAD: usize = 85;

/// The receive size the core asks for by default: `_clear` calls `setBufferSizes(16384, 512)`.
pub const DEFAULT_RECV: usize = 16384;

/// The transmit size the core asks for by default (same call): "minimum safe".
pub const DEFAULT_XMIT: usize = 512;

/// The sizes `setBufferSizes` accepts; it clamps anything outside to them.
pub const BUFFER_SIZE_RANGE: std::ops::RangeInclusive<usize> = 512..=16384;

/// The two buffers a connection allocates (`_connectSSL`, through `_alloc_iobuf`), overheads
/// included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoBuffers {
    /// The input buffer, bytes.
    pub recv: usize,
    /// The output buffer, bytes.
    pub xmit: usize,
}

impl Default for IoBuffers {
    /// What a connection allocates when the sketch never calls `setBufferSizes`: 16,709 B in
    /// and 597 B out.
    fn default() -> Self {
        Self::requested(DEFAULT_RECV, DEFAULT_XMIT)
    }
}

impl IoBuffers {
    /// The buffers after `setBufferSizes(recv, xmit)`: each clamped to 512..=16384, then
    /// the overheads added (`WiFiClientSecureCtx::setBufferSizes`).
    pub fn requested(recv: usize, xmit: usize) -> Self {
        let clamp = |n: usize| n.clamp(*BUFFER_SIZE_RANGE.start(), *BUFFER_SIZE_RANGE.end());
        Self {
            recv: clamp(recv) + RECV_OVERHEAD,
            xmit: clamp(xmit) + XMIT_OVERHEAD,
        }
    }

    /// The buffers a sketch sets after a successful MFLN probe, as the core's
    /// BearSSL_MaxFragmentLength example does: `setBufferSizes(len, len)`.
    pub fn for_fragment(length: MaxFragmentLength) -> Self {
        Self::requested(length.bytes(), length.bytes())
    }

    /// Both buffers together.
    pub fn total(&self) -> usize {
        self.recv + self.xmit
    }

    /// The Maximum Fragment Length BearSSL asks for with these buffers, or `None` when it
    /// sends no such extension. `br_ssl_engine_set_buffers_bidi` (ssl_engine.c) takes the
    /// largest 2^n, n from 14 down to 9, that fits both buffers with their overheads (2^13 is
    /// taken as 2^12, which RFC 6066 has no code for), and `write-ClientHello` sends the
    /// extension unless n is 14. The default 597-byte output buffer fits only 512, so **by
    /// default the board asks for 512-byte fragments**.
    pub fn max_fragment_request(&self) -> Option<MaxFragmentLength> {
        let log = (9..=14).rev().find(|&n| {
            let fragment = 1usize << n;
            self.xmit >= fragment + XMIT_OVERHEAD && self.recv >= fragment + RECV_OVERHEAD
        })?;
        match log {
            14 => None,
            13 | 12 => Some(MaxFragmentLength::Bytes4096),
            11 => Some(MaxFragmentLength::Bytes2048),
            10 => Some(MaxFragmentLength::Bytes1024),
            _ => Some(MaxFragmentLength::Bytes512),
        }
    }

    /// The most plaintext one record from the board carries: the output buffer less its
    /// overhead (BearSSL fills a record from the output buffer). The core also flushes a
    /// record at the end of every `write()` (`_write` calls `br_ssl_engine_flush`), so each
    /// `write()` of a library is at least one record of its own.
    pub fn max_record_plaintext(&self) -> usize {
        self.xmit - XMIT_OVERHEAD
    }

    /// The `max_fragment_size` a rustls client needs to cut its records where the board does:
    /// rustls counts the 5-byte record header in it (rustls 0.23, msgs/fragmenter.rs,
    /// `MessageFragmenter::set_max_fragment_size`). 517 for the default buffers.
    pub fn rustls_max_fragment_size(&self) -> usize {
        self.max_record_plaintext() + RECORD_HEADER_LEN
    }
}

/// How the board checks the server's certificate (`setTrustAnchors` with `br_x509_minimal`;
/// `setFingerprint` and `setInsecure` with the core's `br_x509_insecure`).
pub use super::settings::Verification;

/// Estimated `sizeof(br_ssl_client_context)` on the ESP8266, B: computed from the core's
/// BearSSL headers (tools/sdk/include/bearssl) by a 32-bit compiler with 8-byte-aligned
/// 64-bit integers (gcc -m32 -malign-double), the data model of the xtensa-lx106 toolchain.
/// An estimate, not measured on a board. Allocated in `_connectSSL`, kept for the connection.
pub const CLIENT_CONTEXT_BYTES: usize = 3408;

/// Estimated `sizeof(br_x509_minimal_context)`, B, the same way: CA checking's validator,
/// allocated in `_installClientX509Validator` and freed once the handshake is done.
pub const X509_MINIMAL_CONTEXT_BYTES: usize = 3064;

/// Estimated size of the core's `br_x509_insecure_context` (fingerprint or insecure), B, the
/// same way; also freed after the handshake.
pub const X509_INSECURE_CONTEXT_BYTES: usize = 1480;

/// The secondary stack BearSSL runs on, B: one per application, not per connection
/// (cores/esp8266/StackThunk.cpp, `_stackSize`), allocated while any secure client exists.
pub const SECONDARY_STACK_BYTES: usize = 6200;

/// The heap one connection takes on the board: its buffers, its engine context and, during
/// the handshake only, its certificate validator. The allocator's per-block headers and the
/// `shared_ptr` control blocks (a few tens of bytes) are not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionHeap {
    /// Both I/O buffers.
    pub io_buffers: usize,
    /// The `br_ssl_client_context` (estimate).
    pub engine: usize,
    /// The certificate validator's context (estimate), freed after the handshake.
    pub validator: usize,
}

impl ConnectionHeap {
    /// Held for the life of the connection.
    pub fn steady(&self) -> usize {
        self.io_buffers + self.engine
    }

    /// Held during the handshake.
    pub fn handshake_peak(&self) -> usize {
        self.steady() + self.validator
    }
}

/// The heap a connection with these buffers and this certificate check takes. By default
/// (16,709 + 597 B buffers) 20,714 B for the connection and 23,778 B during a handshake that
/// checks a CA (the core's documentation says "approximately 22KB"); with MFLN 512 and
/// `setBufferSizes(512, 512)`, 4,842 B.
pub fn connection_heap(buffers: IoBuffers, verification: Verification) -> ConnectionHeap {
    let validator = match verification {
        Verification::Ca => X509_MINIMAL_CONTEXT_BYTES,
        Verification::Fingerprint | Verification::Insecure => X509_INSECURE_CONTEXT_BYTES,
    };
    ConnectionHeap {
        io_buffers: buffers.total(),
        engine: CLIENT_CONTEXT_BYTES,
        validator,
    }
}

/// The longest server name BearSSL takes: its `server_name` field holds 256 bytes with the
/// terminating NUL (`br_ssl_client_reset`, ssl_client.c).
pub const MAX_SERVER_NAME: usize = 255;

/// A ClientHello the board could not send.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ClientHelloError {
    /// A server name over [`MAX_SERVER_NAME`] bytes (`br_ssl_client_reset` fails).
    #[error("server name of {0} B, over BearSSL's {MAX_SERVER_NAME}")]
    ServerNameTooLong(usize),
    /// A session id over 32 bytes.
    #[error("session id of {0} B, over 32")]
    SessionIdTooLong(usize),
}

/// The signature algorithms BearSSL lists (`write-ClientHello` and `write-hashes`): ECDSA,
/// then RSA, each with SHA-256, SHA-224, SHA-384, SHA-512 and SHA-1 (the core installs all of
/// them: `br_ssl_client_install_hashes`; BearSSL skips MD5 here).
const SIGNATURE_ALGORITHMS: [[u8; 2]; 10] = [
    [4, 3],
    [3, 3],
    [5, 3],
    [6, 3],
    [2, 3],
    [4, 1],
    [3, 1],
    [5, 1],
    [6, 1],
    [2, 1],
];

/// The curves BearSSL lists: Curve25519 first, then the others by id (P-256, P-384, P-521);
/// `br_ec_all_m15`'s set, which `br_ssl_engine_set_default_ecdsa` installs.
const SUPPORTED_GROUPS: [u16; 4] = [29, 23, 24, 25];

/// The ClientHello record the board writes (BearSSL's `write-ClientHello`, ssl_hs_client.t0,
/// with the core's defaults), given the random's last 28 bytes. `server_name` is what the
/// sketch passed: the core hands BearSSL the host of `connect(const char*, port)` as it is,
/// an IP address written as text included (BearSSL then sends it as SNI), and none for
/// `connect(IPAddress, port)`. `session_id` is empty for a new session, or the id a
/// `BearSSL::Session` saved, to resume.
pub fn client_hello(
    server_name: Option<&str>,
    session_id: &[u8],
    buffers: IoBuffers,
    random: [u8; 28],
) -> Result<Vec<u8>, ClientHelloError> {
    let name = server_name.unwrap_or("");
    if name.len() > MAX_SERVER_NAME {
        return Err(ClientHelloError::ServerNameTooLong(name.len()));
    }
    if session_id.len() > 32 {
        return Err(ClientHelloError::SessionIdTooLong(session_id.len()));
    }
    // Extensions in BearSSL's order: renegotiation_info (empty on a first handshake),
    // server_name, max_fragment_length, signature_algorithms, supported_groups,
    // ec_point_formats. No ALPN (the core sets no protocol names) and no padding (the core's
    // `br_ssl_client_zero` leaves min_clienthello_len at 0).
    let mut ext = Vec::new();
    push_extension(&mut ext, extension::RENEGOTIATION_INFO, &[0]);
    if !name.is_empty() {
        let mut sni = Vec::new();
        sni.extend_from_slice(&(name.len() as u16 + 3).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name.as_bytes());
        push_extension(&mut ext, extension::SERVER_NAME, &sni);
    }
    if let Some(fragment) = buffers.max_fragment_request() {
        push_extension(&mut ext, extension::MAX_FRAGMENT_LENGTH, &[fragment.code()]);
    }
    push_extension(
        &mut ext,
        extension::SIGNATURE_ALGORITHMS,
        &signature_algorithms(),
    );
    push_extension(
        &mut ext,
        extension::SUPPORTED_GROUPS,
        &supported_groups(&SUPPORTED_GROUPS),
    );
    push_extension(&mut ext, extension::EC_POINT_FORMATS, &[1, 0]);

    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]); // version_max: TLS 1.2
    body.extend_from_slice(&[0; 4]); // BearSSL zeroes the random's first four bytes
    body.extend_from_slice(&random);
    body.push(session_id.len() as u8);
    body.extend_from_slice(session_id);
    push_suites(&mut body);
    body.extend_from_slice(&[1, 0]); // compression: null only
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    // The record header carries version_min, TLS 1.0 by default (`_clear`: `_tls_min`), as
    // `br_ssl_client_reset` sets version_out.
    Ok(handshake_record([3, 1], &body))
}

/// The length of the record [`client_hello`] builds, from the length words of BearSSL's
/// `write-ClientHello` (39 B of fixed fields, the session id, 2 B per suite, then the
/// extensions: renegotiation_info 5, server_name host + 9, max_fragment_length 5,
/// signature_algorithms 26, supported_groups 14, ec_point_formats 6), plus the 4-byte
/// handshake header and the 5-byte record header. With the default buffers, no session and
/// no server name (an `IPAddress`): 196 B; with "127.0.0.1" as text: 214 B.
pub fn client_hello_len(
    server_name: Option<&str>,
    session_id_len: usize,
    buffers: IoBuffers,
) -> usize {
    let sni = server_name.map_or(0, |n| if n.is_empty() { 0 } else { n.len() + 9 });
    let fragment = if buffers.max_fragment_request().is_some() {
        5
    } else {
        0
    };
    let extensions = 5 + sni + fragment + 26 + 14 + 6;
    let body = 39 + session_id_len + 2 * DEFAULT_CLIENT_SUITES.len() + 2 + extensions;
    RECORD_HEADER_LEN + 4 + body
}

/// The ClientHello `probeMaxFragmentLength` writes by hand (`WiFiClientSecure::
/// probeMaxFragmentLength(IPAddress, ...)`): TLS 1.2 in the record header and the body, a
/// fixed "random" (bytes 01..08 11..18 twice), no session id, every default suite, then
/// exactly four extensions in this order: signature_algorithms (the same ten as BearSSL's),
/// supported_groups (P-256, P-384, P-521, then Curve25519: another order than BearSSL's),
/// ec_point_formats and max_fragment_length with the asked code. No renegotiation_info and no
/// server_name: the probe connects to an address, whatever host the sketch named. 191 B.
pub fn mfln_probe_client_hello(fragment: MaxFragmentLength) -> Vec<u8> {
    let mut ext = Vec::new();
    push_extension(
        &mut ext,
        extension::SIGNATURE_ALGORITHMS,
        &signature_algorithms(),
    );
    push_extension(
        &mut ext,
        extension::SUPPORTED_GROUPS,
        &supported_groups(&[23, 24, 25, 29]),
    );
    push_extension(&mut ext, extension::EC_POINT_FORMATS, &[1, 0]);
    push_extension(&mut ext, extension::MAX_FRAGMENT_LENGTH, &[fragment.code()]);

    let mut body = Vec::new();
    body.extend_from_slice(&[3, 3]);
    for _ in 0..2 {
        body.extend(1..=8u8);
        body.extend(0x11..=0x18u8);
    }
    body.push(0);
    push_suites(&mut body);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    handshake_record([3, 3], &body)
}

/// Why the core's probe concludes a server does not do MFLN. The core reads only the first
/// record of the reply, and any of these ends the probe with "not supported" (it then sends
/// the user_canceled and close_notify alerts and closes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeRefusal {
    /// The reply ends before its first record does (the core's reads would time out).
    Truncated,
    /// The first record is not a TLS 1.2 (0x0303) handshake record.
    NotTls12Handshake,
    /// The record is too short to hold a ServerHello with extensions (under 42 B).
    TooShort,
    /// The first message is not a ServerHello.
    NotServerHello,
    /// The ServerHello does not fill the record alone: the core requires its length to be
    /// the record's less its 4-byte header.
    NotAloneInRecord,
    /// The ServerHello does not parse, or chose a version other than TLS 1.2.
    BadServerHello(Option<HelloError>),
    /// The ServerHello has no extensions.
    NoExtensions,
    /// An extension before max_fragment_length is longer than the 32 B the core skips.
    LongExtension(u16),
    /// max_fragment_length is not among the extensions.
    NotEchoed,
}

/// What the core's probe makes of the server's reply to [`mfln_probe_client_hello`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MflnProbeAnswer {
    /// The ServerHello echoes max_fragment_length (the core checks only that its body is one
    /// byte; the parser here also requires a valid code).
    Supported(MaxFragmentLength),
    /// The core's probe returns false, for this reason.
    NotSupported(ProbeRefusal),
}

/// Reads a server's reply to the probe as `probeMaxFragmentLength` does.
pub fn mfln_probe_answer(reply: &[u8]) -> MflnProbeAnswer {
    use MflnProbeAnswer::NotSupported;
    let Some(header) = reply.get(..RECORD_HEADER_LEN) else {
        return NotSupported(ProbeRefusal::Truncated);
    };
    if header[..3] != [22, 3, 3] {
        return NotSupported(ProbeRefusal::NotTls12Handshake);
    }
    let record_len = u16::from_be_bytes([header[3], header[4]]) as usize;
    if record_len < 4 + 2 + 32 + 1 + 2 + 1 {
        return NotSupported(ProbeRefusal::TooShort);
    }
    // The core reads the handshake header next and judges it before reading any further.
    let Some(head) = reply.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + 4) else {
        return NotSupported(ProbeRefusal::Truncated);
    };
    if head[0] != 2 {
        return NotSupported(ProbeRefusal::NotServerHello);
    }
    let hello_len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
    if hello_len != record_len - 4 {
        return NotSupported(ProbeRefusal::NotAloneInRecord);
    }
    let Some(record) = reply.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + record_len) else {
        return NotSupported(ProbeRefusal::Truncated);
    };
    let hello = match ServerHello::parse(&record[4..]) {
        Ok(hello) if hello.version == 0x0303 => hello,
        Ok(_) => return NotSupported(ProbeRefusal::BadServerHello(None)),
        Err(error) => return NotSupported(ProbeRefusal::BadServerHello(Some(error))),
    };
    if hello.extensions.is_empty() {
        return NotSupported(ProbeRefusal::NoExtensions);
    }
    for ext in &hello.extensions {
        if ext.data.len() > 32 {
            return NotSupported(ProbeRefusal::LongExtension(ext.kind));
        }
        if ext.kind == extension::MAX_FRAGMENT_LENGTH {
            // ServerHello::parse has checked it is one byte of a valid code.
            if let Some(fragment) = hello.max_fragment_length {
                return MflnProbeAnswer::Supported(fragment);
            }
        }
    }
    NotSupported(ProbeRefusal::NotEchoed)
}

/// The board's CPU time for a full handshake without certificate checking (`setInsecure` or
/// `setFingerprint`) at 80 MHz: ~1.0 s (/work/shared/reference/esp8266.md, from the core's
/// issues; #4796 reports ~580 ms for an insecure connect on some server, #4738 ~514 ms).
pub const FULL_HANDSHAKE_UNCHECKED: Duration = Duration::from_millis(1000);

/// The board's CPU time for a full handshake that checks the chain against a CA at 80 MHz:
/// ~1.4 s (same reference).
pub const FULL_HANDSHAKE_CA: Duration = Duration::from_millis(1400);

/// The board's CPU time for a resumed handshake at 80 MHz: **an assumption**, 50 ms. No
/// published figure isolates it. The one measurement found (esp8266/Arduino PR #5160, 80 MHz,
/// api.github.com with CA checking) gives 370–386 ms for a whole resumed fetch (TCP connect,
/// the abbreviated handshake and an HTTP request and its response over the Internet) against
/// 1,564–2,042 ms without resumption: an upper bound. A resumed handshake does no public-key
/// operation, only the TLS 1.2 PRF (a few dozen SHA-256 blocks), the hashes of ~300 B of
/// handshake messages and one Finished each way; 50 ms leaves an order of magnitude above
/// that work's estimate for BearSSL's interpreted state machine and code run from flash.
pub const RESUMED_HANDSHAKE: Duration = Duration::from_millis(50);

fn push_extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn push_suites(out: &mut Vec<u8>) {
    out.extend_from_slice(&(2 * DEFAULT_CLIENT_SUITES.len() as u16).to_be_bytes());
    for suite in DEFAULT_CLIENT_SUITES {
        out.extend_from_slice(&suite.id.to_be_bytes());
    }
}

fn signature_algorithms() -> Vec<u8> {
    let mut out = (2 * SIGNATURE_ALGORITHMS.len() as u16)
        .to_be_bytes()
        .to_vec();
    out.extend(SIGNATURE_ALGORITHMS.iter().flatten());
    out
}

fn supported_groups(groups: &[u16]) -> Vec<u8> {
    let mut out = (2 * groups.len() as u16).to_be_bytes().to_vec();
    out.extend(groups.iter().flat_map(|g| g.to_be_bytes()));
    out
}

/// A handshake record holding one ClientHello with this body.
fn handshake_record(version: [u8; 2], body: &[u8]) -> Vec<u8> {
    let mut out = vec![22, version[0], version[1]];
    out.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
    out.push(1);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::records::{ClientHello, HandshakeType, RecordScanner};

    fn unhex(hex: &str) -> Vec<u8> {
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The 45 default suites as hex, from the `BR_TLS_*` values in the core's
    /// tools/sdk/include/bearssl/bearssl_ssl.h, in the order of the core's `suites_P`.
    const DEFAULT_SUITES_HEX: &str = "cca9 cca8 c02b c02f c02c c030 c0ac c0ad c0ae c0af c023 c027 \
        c024 c028 c009 c013 c00a c014 c02d c031 c02e c032 c025 c029 c026 c02a c004 c00e c005 \
        c00f 009c 009d c09c c09d c0a0 c0a1 003c 003d 002f 0035 c008 c012 c003 c00d 000a";

    /// signature_algorithms: ECDSA (3) then RSA (1), each with SHA-256 (4), SHA-224 (3),
    /// SHA-384 (5), SHA-512 (6), SHA-1 (2), as `write-hashes` orders them.
    const SIG_ALGS_HEX: &str = "000d 0016 0014 0403 0303 0503 0603 0203 0401 0301 0501 0601 0201";

    #[test]
    fn tls_bearssl_default_suites_and_what_rustls_shares() {
        let ids: Vec<u16> = DEFAULT_CLIENT_SUITES.iter().map(|s| s.id).collect();
        let hex: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
        assert_eq!(hex, unhex(DEFAULT_SUITES_HEX));
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 45);
        let shared: Vec<u16> = ids
            .iter()
            .copied()
            .filter(|id| RUSTLS_TLS12_SUITES.contains(id))
            .collect();
        assert_eq!(shared, [0xCCA9, 0xCCA8, 0xC02B, 0xC02F, 0xC02C, 0xC030]);
        // A rustls server with an ECDSA key does the three ECDSA suites, with an RSA key the
        // three RSA ones; the board's order decides.
        let ecdsa = first_shared_suite(&[0xC02C, 0xC02B, 0xCCA9]).unwrap();
        assert_eq!(ecdsa.name, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
        assert_eq!(
            first_shared_suite(&[0xC030, 0xC02F, 0xCCA8]).unwrap().id,
            0xCCA8
        );
        assert_eq!(first_shared_suite(&[0xC030, 0xC02F]).unwrap().id, 0xC02F);
        assert_eq!(first_shared_suite(&[0x1301]), None);
    }

    #[test]
    fn tls_bearssl_buffers_and_the_fragment_length_they_ask_for() {
        let default = IoBuffers::default();
        assert_eq!(
            default,
            IoBuffers {
                recv: 16_709,
                xmit: 597
            }
        );
        assert_eq!(
            default.max_fragment_request(),
            Some(MaxFragmentLength::Bytes512)
        );
        assert_eq!(default.max_record_plaintext(), 512);
        assert_eq!(default.rustls_max_fragment_size(), 517);
        let mfln_2048 = IoBuffers::for_fragment(MaxFragmentLength::Bytes2048);
        assert_eq!(mfln_2048.max_record_plaintext(), 2048);
        assert_eq!(
            IoBuffers::requested(16384, 16384).max_fragment_request(),
            None
        );
        // 2^13 fits but has no code: BearSSL asks for 4096.
        assert_eq!(
            IoBuffers::requested(8192, 8192).max_fragment_request(),
            Some(MaxFragmentLength::Bytes4096)
        );
        // The smaller buffer decides.
        assert_eq!(
            IoBuffers::requested(1024, 4096).max_fragment_request(),
            Some(MaxFragmentLength::Bytes1024)
        );
        for m in MaxFragmentLength::ALL {
            assert_eq!(IoBuffers::for_fragment(m).max_fragment_request(), Some(m));
        }
        assert_eq!(
            IoBuffers::requested(100, 100_000),
            IoBuffers {
                recv: 837,
                xmit: 16_469
            }
        );
    }

    #[test]
    fn tls_bearssl_connection_heap() {
        let default = connection_heap(IoBuffers::default(), Verification::Ca);
        assert_eq!(default.steady(), 16_709 + 597 + 3408);
        assert_eq!(default.handshake_peak(), 20_714 + 3064);
        let insecure = connection_heap(IoBuffers::default(), Verification::Insecure);
        assert_eq!(insecure.handshake_peak(), 20_714 + 1480);
        let steady: Vec<usize> = MaxFragmentLength::ALL
            .into_iter()
            .map(|m| connection_heap(IoBuffers::for_fragment(m), Verification::Ca).steady())
            .collect();
        assert_eq!(steady, [4842, 5866, 7914, 12_010]);
    }

    /// The board's ClientHello with the default buffers, no server name (`connect(IPAddress)`)
    /// and no session, its random's last 28 bytes 0xEE, written out from `write-ClientHello`:
    /// record header (handshake, version_min TLS 1.0, 191 B), ClientHello header (187 B),
    /// TLS 1.2, the random (BearSSL zeroes its first four bytes), no session id, 45 suites,
    /// null compression, 56 B of extensions: renegotiation_info (empty), max_fragment_length
    /// 512 (code 1: the 597-byte output buffer), signature_algorithms, supported_groups
    /// (x25519, P-256, P-384, P-521), ec_point_formats (uncompressed).
    fn default_client_hello_hex() -> String {
        format!(
            "16 0301 00bf  01 0000bb  0303  00000000 {random}  00  005a {DEFAULT_SUITES_HEX}  0100 \
             0038  ff01 0001 00  0001 0001 01  {SIG_ALGS_HEX}  000a 000a 0008 001d 0017 0018 0019 \
             000b 0002 0100",
            random = "ee".repeat(28)
        )
    }

    #[test]
    fn tls_bearssl_client_hello_bytes() {
        let hello = client_hello(None, &[], IoBuffers::default(), [0xEE; 28]).unwrap();
        assert_eq!(hello, unhex(&default_client_hello_hex()));
        assert_eq!(hello.len(), 196);
        assert_eq!(client_hello_len(None, 0, IoBuffers::default()), 196);

        let mut scanner = RecordScanner::new();
        scanner.feed(&hello).unwrap();
        let parsed = scanner.client_hello().unwrap();
        assert_eq!(parsed.cipher_suites.len(), 45);
        assert_eq!(
            parsed.max_fragment_length,
            Some(MaxFragmentLength::Bytes512)
        );
        assert_eq!(parsed.server_name, None);
        assert!(
            parsed.extension(extension::SESSION_TICKET).is_none(),
            "no tickets"
        );
        assert_eq!(scanner.messages()[0].kind, HandshakeType::ClientHello);
    }

    #[test]
    fn tls_bearssl_client_hello_length_follows_name_session_and_buffers() {
        let buffers = [
            IoBuffers::default(),
            IoBuffers::requested(16384, 16384),
            IoBuffers::for_fragment(MaxFragmentLength::Bytes2048),
        ];
        for name in [
            None,
            Some("127.0.0.1"),
            Some("broker.example.com"),
            Some(""),
        ] {
            for session in [&[][..], &[0x5A; 32][..]] {
                for b in buffers {
                    let hello = client_hello(name, session, b, [1; 28]).unwrap();
                    assert_eq!(hello.len(), client_hello_len(name, session.len(), b));
                    let parsed = ClientHello::parse(&hello[9..]).unwrap();
                    assert_eq!(
                        parsed.server_name.as_deref(),
                        name.filter(|n| !n.is_empty())
                    );
                    assert_eq!(parsed.session_id, session);
                    assert_eq!(parsed.max_fragment_length, b.max_fragment_request());
                }
            }
        }
        // An IP written as text is sent as SNI: 18 B more than connect(IPAddress).
        assert_eq!(
            client_hello_len(Some("127.0.0.1"), 0, IoBuffers::default()),
            214
        );
        // Resuming adds the 32-byte session id.
        assert_eq!(client_hello_len(None, 32, IoBuffers::default()), 228);
        assert_eq!(
            client_hello(Some(&"a".repeat(256)), &[], IoBuffers::default(), [0; 28]),
            Err(ClientHelloError::ServerNameTooLong(256))
        );
    }

    /// The probe's ClientHello for 512 B, written out from `probeMaxFragmentLength`: record
    /// header (handshake, TLS 1.2, 186 B), ClientHello header (182 B), TLS 1.2, the fixed
    /// random, no session id, the 45 suites, null compression, 51 B of extensions.
    const PROBE_512_HEX: &str = "16 0303 00ba  01 0000b6  0303 \
        0102030405060708 1112131415161718 0102030405060708 1112131415161718  00";

    #[test]
    fn tls_bearssl_mfln_probe_client_hello_bytes() {
        let expected = format!(
            "{PROBE_512_HEX} 005a {DEFAULT_SUITES_HEX} 0100 0033 {SIG_ALGS_HEX} \
             000a 000a 0008 0017 0018 0019 001d  000b 0002 0100  0001 0001 01"
        );
        let probe = mfln_probe_client_hello(MaxFragmentLength::Bytes512);
        assert_eq!(probe, unhex(&expected));
        assert_eq!(probe.len(), 191);
        let parsed = ClientHello::parse(&probe[9..]).unwrap();
        assert_eq!(parsed.server_name, None);
        assert_eq!(parsed.extension(extension::RENEGOTIATION_INFO), None);
        for m in MaxFragmentLength::ALL {
            let probe = mfln_probe_client_hello(m);
            assert_eq!(probe.len(), 191);
            assert_eq!(*probe.last().unwrap(), m.code());
        }
    }

    /// A reply record holding the given handshake messages.
    fn reply(version: [u8; 2], messages: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = messages.concat();
        let mut out = vec![22, version[0], version[1]];
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend(body);
        out
    }

    fn server_hello(extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0xAB; 32]);
        body.push(32);
        body.extend_from_slice(&[0xCD; 32]);
        body.extend_from_slice(&[0xCC, 0xA9, 0]);
        let mut block = Vec::new();
        for (kind, data) in extensions {
            push_extension(&mut block, *kind, data);
        }
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend(block);
        let mut out = vec![2];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend(body);
        out
    }

    #[test]
    fn tls_bearssl_mfln_probe_answer_reads_the_reply_as_the_core_does() {
        use MflnProbeAnswer::{NotSupported, Supported};
        let echoed = server_hello(&[(0xFF01, &[0]), (1, &[1])]);
        let accepted = reply([3, 3], std::slice::from_ref(&echoed));
        assert_eq!(
            mfln_probe_answer(&accepted),
            Supported(MaxFragmentLength::Bytes512)
        );
        // The Certificate following in its own record is not read.
        let mut with_more = accepted.clone();
        with_more.extend(reply([3, 3], &[vec![11, 0, 0, 3, 0, 0, 0]]));
        assert_eq!(
            mfln_probe_answer(&with_more),
            Supported(MaxFragmentLength::Bytes512)
        );
        // The same ServerHello sharing its record with the Certificate is refused.
        let shared = reply([3, 3], &[echoed.clone(), vec![11, 0, 0, 3, 0, 0, 0]]);
        assert_eq!(
            mfln_probe_answer(&shared),
            NotSupported(ProbeRefusal::NotAloneInRecord)
        );
        assert_eq!(
            mfln_probe_answer(&reply([3, 3], &[server_hello(&[(0xFF01, &[0])])])),
            NotSupported(ProbeRefusal::NotEchoed)
        );
        assert_eq!(
            mfln_probe_answer(&reply([3, 1], std::slice::from_ref(&echoed))),
            NotSupported(ProbeRefusal::NotTls12Handshake)
        );
        assert_eq!(
            mfln_probe_answer(&accepted[..accepted.len() - 1]),
            NotSupported(ProbeRefusal::Truncated)
        );
        // An extension over 32 B before max_fragment_length ends the core's walk; after it,
        // it is never reached.
        let long = [0u8; 33];
        assert_eq!(
            mfln_probe_answer(&reply([3, 3], &[server_hello(&[(16, &long), (1, &[1])])])),
            NotSupported(ProbeRefusal::LongExtension(16))
        );
        assert_eq!(
            mfln_probe_answer(&reply([3, 3], &[server_hello(&[(1, &[4]), (16, &long)])])),
            Supported(MaxFragmentLength::Bytes4096)
        );
        assert_eq!(
            mfln_probe_answer(&[21, 3, 3, 0, 2, 2, 40]),
            NotSupported(ProbeRefusal::NotTls12Handshake),
            "a handshake_failure alert"
        );
    }

    /// What rustls 0.23.46 (ring, TLS 1.2 only, a self-signed ECDSA P-256 certificate from
    /// rcgen) answered to [`mfln_probe_client_hello`] for 512 B, captured in memory from a
    /// `ServerConnection`: the record header (591 B of body) and the ServerHello, cut there.
    /// The ServerHello (ChaCha20-Poly1305, a new 32-byte session id, no extensions, so no
    /// max_fragment_length: rustls ignores it) shares its record with the Certificate,
    /// ServerKeyExchange and ServerHelloDone, as rustls writes a flight.
    const RUSTLS_PROBE_REPLY_HEX: &str = "160303024f020000480303a9f469829f48d4237fd01081260823\
        01b9d5b5fbe2287d3acc569e4015d2e76f2070dc1dcd741b4c8a8dd049b3ef430c0af97a846615dc67d988\
        499c0631e9acf4cca9000000";

    #[test]
    fn tls_bearssl_mfln_probe_against_rustls_is_refused_at_the_record_length() {
        let reply = unhex(RUSTLS_PROBE_REPLY_HEX);
        assert_eq!(
            mfln_probe_answer(&reply),
            MflnProbeAnswer::NotSupported(ProbeRefusal::NotAloneInRecord)
        );
        // Had the ServerHello come alone, it would still lack the extension.
        let hello = ServerHello::parse(&reply[9..]).unwrap();
        assert_eq!(hello.cipher_suite, 0xCCA9);
        assert_eq!(hello.max_fragment_length, None);
        let mut alone = reply.clone();
        alone[3..5].copy_from_slice(&((reply.len() - 5) as u16).to_be_bytes());
        assert_eq!(
            mfln_probe_answer(&alone),
            MflnProbeAnswer::NotSupported(ProbeRefusal::NoExtensions)
        );
    }
}
