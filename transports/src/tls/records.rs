//! TLS records and the cleartext handshake they carry, followed over a byte stream: no I/O.
//!
//! A [`RecordScanner`] watches one direction of one connection. Feed it the bytes as they are
//! read or written, cut anywhere; it keeps a partial record header or body across calls. It
//! tallies whole records and their bytes by content type ([`RecordTally`]), and, while the
//! direction is still in cleartext (before its ChangeCipherSpec), the handshake messages they
//! carry ([`HandshakeMessage`]; a message may span records and a record may hold several).
//! It parses a [`ClientHello`] and a [`ServerHello`] as they complete, and on the server's
//! direction tells a resumed TLS 1.2 handshake from a full one ([`HandshakeKind`]) as soon as
//! that is decidable.
//!
//! What a record costs once encrypted is [`aead_record_overhead`]. Which bytes a board sends is
//! the business of [`super::bearssl`]; what is measured is the harness's.

use thiserror::Error;

/// Bytes of a record header: content type, version, length.
pub const RECORD_HEADER_LEN: usize = 5;

/// The longest record body a peer may send (RFC 5246 §6.2.3: 2^14 plus 2048 of expansion).
pub const MAX_RECORD_BODY: usize = (1 << 14) + 2048;

/// The longest handshake message the scanner reassembles (a certificate chain fits in it).
pub const MAX_HANDSHAKE_MESSAGE: usize = 1 << 16;

/// A record's content type (RFC 5246 §6.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// 20: one byte that switches this direction to the negotiated keys.
    ChangeCipherSpec,
    /// 21: a warning or fatal alert.
    Alert,
    /// 22: handshake messages.
    Handshake,
    /// 23: application data.
    ApplicationData,
}

impl ContentType {
    /// The content type with this code, if it is one of the four TLS 1.2 knows.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            20 => Some(Self::ChangeCipherSpec),
            21 => Some(Self::Alert),
            22 => Some(Self::Handshake),
            23 => Some(Self::ApplicationData),
            _ => None,
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Self::ChangeCipherSpec => 20,
            Self::Alert => 21,
            Self::Handshake => 22,
            Self::ApplicationData => 23,
        }
    }
}

/// Whole records of one content type and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCount {
    /// Records.
    pub records: u64,
    /// Bytes on the wire, 5-byte headers included.
    pub bytes: u64,
    /// Bytes of the bodies alone (ciphertext once encrypted).
    pub body_bytes: u64,
}

impl RecordCount {
    fn add(&mut self, body_len: usize) {
        self.records += 1;
        self.bytes += (RECORD_HEADER_LEN + body_len) as u64;
        self.body_bytes += body_len as u64;
    }
}

/// Whole records seen on one direction, by content type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordTally {
    /// ChangeCipherSpec records.
    pub change_cipher_spec: RecordCount,
    /// Alert records.
    pub alert: RecordCount,
    /// Handshake records, cleartext or encrypted (Finished).
    pub handshake: RecordCount,
    /// Application data records.
    pub application_data: RecordCount,
}

impl RecordTally {
    /// The count for one content type.
    pub fn of(&self, kind: ContentType) -> RecordCount {
        match kind {
            ContentType::ChangeCipherSpec => self.change_cipher_spec,
            ContentType::Alert => self.alert,
            ContentType::Handshake => self.handshake,
            ContentType::ApplicationData => self.application_data,
        }
    }

    fn of_mut(&mut self, kind: ContentType) -> &mut RecordCount {
        match kind {
            ContentType::ChangeCipherSpec => &mut self.change_cipher_spec,
            ContentType::Alert => &mut self.alert,
            ContentType::Handshake => &mut self.handshake,
            ContentType::ApplicationData => &mut self.application_data,
        }
    }

    /// All four content types together.
    pub fn total(&self) -> RecordCount {
        let all = [
            self.change_cipher_spec,
            self.alert,
            self.handshake,
            self.application_data,
        ];
        all.iter()
            .fold(RecordCount::default(), |sum, c| RecordCount {
                records: sum.records + c.records,
                bytes: sum.bytes + c.bytes,
                body_bytes: sum.body_bytes + c.body_bytes,
            })
    }
}

/// A handshake message's type (RFC 5246 §7.4; NewSessionTicket from RFC 5077).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeType {
    /// 0.
    HelloRequest,
    /// 1.
    ClientHello,
    /// 2.
    ServerHello,
    /// 4.
    NewSessionTicket,
    /// 11.
    Certificate,
    /// 12.
    ServerKeyExchange,
    /// 13.
    CertificateRequest,
    /// 14.
    ServerHelloDone,
    /// 15.
    CertificateVerify,
    /// 16.
    ClientKeyExchange,
    /// 20 (in TLS 1.2 always encrypted, so never seen by the scanner).
    Finished,
    /// Any other code.
    Other(u8),
}

impl HandshakeType {
    /// The type with this code.
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::HelloRequest,
            1 => Self::ClientHello,
            2 => Self::ServerHello,
            4 => Self::NewSessionTicket,
            11 => Self::Certificate,
            12 => Self::ServerKeyExchange,
            13 => Self::CertificateRequest,
            14 => Self::ServerHelloDone,
            15 => Self::CertificateVerify,
            16 => Self::ClientKeyExchange,
            20 => Self::Finished,
            other => Self::Other(other),
        }
    }
}

/// One cleartext handshake message: its type and body length (its 4-byte header excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeMessage {
    /// The message type.
    pub kind: HandshakeType,
    /// Bytes of its body.
    pub len: usize,
}

/// Whether a TLS 1.2 handshake is full or resumed.
pub use super::settings::HandshakeKind;

/// A Maximum Fragment Length the client may ask for (RFC 6066 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MaxFragmentLength {
    /// Code 1: 2^9 = 512 B.
    Bytes512,
    /// Code 2: 2^10 = 1024 B.
    Bytes1024,
    /// Code 3: 2^11 = 2048 B.
    Bytes2048,
    /// Code 4: 2^12 = 4096 B.
    Bytes4096,
}

impl MaxFragmentLength {
    /// All four, smallest first.
    pub const ALL: [Self; 4] = [
        Self::Bytes512,
        Self::Bytes1024,
        Self::Bytes2048,
        Self::Bytes4096,
    ];

    /// The extension's one-byte code.
    pub fn code(self) -> u8 {
        match self {
            Self::Bytes512 => 1,
            Self::Bytes1024 => 2,
            Self::Bytes2048 => 3,
            Self::Bytes4096 => 4,
        }
    }

    /// The length with this code, if it is one of the four.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The length in bytes.
    pub fn bytes(self) -> usize {
        256 << self.code()
    }

    /// The length of exactly this many bytes, if it is one of the four.
    pub fn from_bytes(bytes: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.bytes() == bytes)
    }
}

/// Extension types the parsers read.
pub mod extension {
    /// server_name (RFC 6066).
    pub const SERVER_NAME: u16 = 0;
    /// max_fragment_length (RFC 6066).
    pub const MAX_FRAGMENT_LENGTH: u16 = 1;
    /// supported_groups (RFC 8422).
    pub const SUPPORTED_GROUPS: u16 = 10;
    /// ec_point_formats (RFC 8422).
    pub const EC_POINT_FORMATS: u16 = 11;
    /// signature_algorithms (RFC 5246).
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    /// extended_master_secret (RFC 7627).
    pub const EXTENDED_MASTER_SECRET: u16 = 23;
    /// session_ticket (RFC 5077).
    pub const SESSION_TICKET: u16 = 35;
    /// renegotiation_info (RFC 5746).
    pub const RENEGOTIATION_INFO: u16 = 0xFF01;
}

/// One hello extension, as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// Its type.
    pub kind: u16,
    /// Its body.
    pub data: Vec<u8>,
}

/// What is wrong with a hello message's body.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum HelloError {
    /// The body ends inside a field.
    #[error("hello truncated in its {0}")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("{0} B after the hello's last field")]
    TrailingBytes(usize),
    /// A session id longer than 32 bytes.
    #[error("session id of {0} B, over 32")]
    SessionIdTooLong(usize),
    /// A cipher suite list of an odd number of bytes.
    #[error("cipher suite list of {0} B, not a whole number of suites")]
    OddCipherSuiteList(usize),
    /// A max_fragment_length extension that is not one byte of code 1 to 4.
    #[error("max_fragment_length extension {0:02x?} is not one byte of code 1 to 4")]
    BadMaxFragmentLength(Vec<u8>),
    /// A server_name extension that is not a list holding one host name.
    #[error("server_name extension is not a list holding one host name")]
    BadServerName,
}

/// What is wrong with the bytes a [`RecordScanner`] was fed. The scanner then stops: every
/// later feed returns the same error.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordError {
    /// A content type other than 20 to 23.
    #[error(
        "record content type {0} is not change_cipher_spec, alert, handshake or application_data"
    )]
    UnknownContentType(u8),
    /// A record version whose major byte is not 3.
    #[error("record version {0:#06x} is not SSL 3 / TLS")]
    NotTls(u16),
    /// A record body longer than [`MAX_RECORD_BODY`].
    #[error("record body of {0} B, over 2^14 + 2048")]
    RecordTooLong(usize),
    /// A cleartext handshake message longer than [`MAX_HANDSHAKE_MESSAGE`].
    #[error("handshake message of {0} B, over the {MAX_HANDSHAKE_MESSAGE} B reassembled")]
    HandshakeTooLong(usize),
    /// A ClientHello or ServerHello that does not parse.
    #[error("bad {message:?}: {error}")]
    Hello {
        /// Which hello.
        message: HandshakeType,
        /// What is wrong with it.
        error: HelloError,
    },
}

/// A ClientHello's fields (RFC 5246 §7.4.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The highest version the client offers (0x0303 for TLS 1.2).
    pub version: u16,
    /// The client random.
    pub random: [u8; 32],
    /// The session id it asks to resume; empty for a new session.
    pub session_id: Vec<u8>,
    /// The suites offered, in the client's order of preference.
    pub cipher_suites: Vec<u16>,
    /// The compression methods offered.
    pub compression_methods: Vec<u8>,
    /// Its extensions in order (none if the hello has no extension block).
    pub extensions: Vec<Extension>,
    /// The host name of its server_name extension.
    pub server_name: Option<String>,
    /// Its max_fragment_length request.
    pub max_fragment_length: Option<MaxFragmentLength>,
}

/// A ServerHello's fields (RFC 5246 §7.4.1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// The version chosen (0x0303 for TLS 1.2).
    pub version: u16,
    /// The server random.
    pub random: [u8; 32],
    /// The session id: the client's if the server resumes it, a new one or empty otherwise.
    pub session_id: Vec<u8>,
    /// The suite chosen.
    pub cipher_suite: u16,
    /// The compression method chosen.
    pub compression_method: u8,
    /// Its extensions in order.
    pub extensions: Vec<Extension>,
    /// The max_fragment_length the server accepted (it echoes the client's).
    pub max_fragment_length: Option<MaxFragmentLength>,
}

impl ClientHello {
    /// Parses a ClientHello body (after the 4-byte handshake header).
    pub fn parse(body: &[u8]) -> Result<Self, HelloError> {
        let mut r = Reader::new(body);
        let version = r.u16("version")?;
        let random = r.random()?;
        let session_id = r.session_id()?;
        let suites = r.vec16("cipher suites")?;
        if suites.len() % 2 != 0 {
            return Err(HelloError::OddCipherSuiteList(suites.len()));
        }
        let cipher_suites = suites
            .chunks(2)
            .map(|s| u16::from_be_bytes([s[0], s[1]]))
            .collect();
        let compression_methods = r.vec8("compression methods")?.to_vec();
        let extensions = r.extensions()?;
        let mut server_name = None;
        let mut max_fragment_length = None;
        for ext in &extensions {
            match ext.kind {
                extension::SERVER_NAME => server_name = Some(parse_server_name(&ext.data)?),
                extension::MAX_FRAGMENT_LENGTH => {
                    max_fragment_length = Some(parse_max_fragment_length(&ext.data)?)
                }
                _ => {}
            }
        }
        Ok(Self {
            version,
            random,
            session_id,
            cipher_suites,
            compression_methods,
            extensions,
            server_name,
            max_fragment_length,
        })
    }

    /// The extension of this type, if the hello carries it.
    pub fn extension(&self, kind: u16) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.kind == kind)
    }
}

impl ServerHello {
    /// Parses a ServerHello body (after the 4-byte handshake header).
    pub fn parse(body: &[u8]) -> Result<Self, HelloError> {
        let mut r = Reader::new(body);
        let version = r.u16("version")?;
        let random = r.random()?;
        let session_id = r.session_id()?;
        let cipher_suite = r.u16("cipher suite")?;
        let compression_method = r.u8("compression method")?;
        let extensions = r.extensions()?;
        let mut max_fragment_length = None;
        for ext in &extensions {
            if ext.kind == extension::MAX_FRAGMENT_LENGTH {
                max_fragment_length = Some(parse_max_fragment_length(&ext.data)?);
            }
        }
        Ok(Self {
            version,
            random,
            session_id,
            cipher_suite,
            compression_method,
            extensions,
            max_fragment_length,
        })
    }

    /// The extension of this type, if the hello carries it.
    pub fn extension(&self, kind: u16) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.kind == kind)
    }
}

fn parse_max_fragment_length(data: &[u8]) -> Result<MaxFragmentLength, HelloError> {
    match data {
        [code] => MaxFragmentLength::from_code(*code),
        _ => None,
    }
    .ok_or_else(|| HelloError::BadMaxFragmentLength(data.to_vec()))
}

fn parse_server_name(data: &[u8]) -> Result<String, HelloError> {
    let mut r = Reader::new(data);
    let list = r
        .vec16("server name list")
        .map_err(|_| HelloError::BadServerName)?;
    let mut l = Reader::new(list);
    let name_type = l.u8("name type").map_err(|_| HelloError::BadServerName)?;
    let name = l
        .vec16("host name")
        .map_err(|_| HelloError::BadServerName)?;
    if name_type != 0 || !r.rest().is_empty() || !l.rest().is_empty() {
        return Err(HelloError::BadServerName);
    }
    String::from_utf8(name.to_vec()).map_err(|_| HelloError::BadServerName)
}

/// A cursor over a hello body; every read names the field it wanted when it runs out.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], HelloError> {
        if self.buf.len() < n {
            return Err(HelloError::Truncated(field));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn rest(&self) -> &'a [u8] {
        self.buf
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(field)? as usize;
        self.take(n, field)
    }

    fn vec16(&mut self, field: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(field)? as usize;
        self.take(n, field)
    }

    fn random(&mut self) -> Result<[u8; 32], HelloError> {
        let mut random = [0; 32];
        random.copy_from_slice(self.take(32, "random")?);
        Ok(random)
    }

    fn session_id(&mut self) -> Result<Vec<u8>, HelloError> {
        let id = self.vec8("session id")?;
        if id.len() > 32 {
            return Err(HelloError::SessionIdTooLong(id.len()));
        }
        Ok(id.to_vec())
    }

    /// The extension block, which a hello may leave out altogether; then nothing may follow.
    fn extensions(&mut self) -> Result<Vec<Extension>, HelloError> {
        let mut extensions = Vec::new();
        if self.buf.is_empty() {
            return Ok(extensions);
        }
        let mut block = Reader::new(self.vec16("extensions")?);
        if !self.buf.is_empty() {
            return Err(HelloError::TrailingBytes(self.buf.len()));
        }
        while !block.buf.is_empty() {
            let kind = block.u16("extension type")?;
            let data = block.vec16("extension body")?.to_vec();
            extensions.push(Extension { kind, data });
        }
        Ok(extensions)
    }
}

/// Where the scanner is in the record it is reading.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// Between records, or inside a header: this many of its bytes are in `header`.
    Header(usize),
    /// Inside a record's body: its type, its length and the bytes still to come.
    Body {
        kind: ContentType,
        len: usize,
        remaining: usize,
    },
}

/// Follows one direction of a TLS connection's byte stream: records by content type, and the
/// cleartext handshake until this direction's ChangeCipherSpec.
#[derive(Clone, Debug)]
pub struct RecordScanner {
    header: [u8; RECORD_HEADER_LEN],
    position: Position,
    encrypted: bool,
    tally: RecordTally,
    handshake_bytes: Vec<u8>,
    messages: Vec<HandshakeMessage>,
    client_hello: Option<ClientHello>,
    server_hello: Option<ServerHello>,
    kind: Option<HandshakeKind>,
    failed: Option<RecordError>,
}

impl Default for RecordScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordScanner {
    /// A scanner at the start of a direction's stream.
    pub fn new() -> Self {
        Self {
            header: [0; RECORD_HEADER_LEN],
            position: Position::Header(0),
            encrypted: false,
            tally: RecordTally::default(),
            handshake_bytes: Vec::new(),
            messages: Vec::new(),
            client_hello: None,
            server_hello: None,
            kind: None,
            failed: None,
        }
    }

    /// Takes the next bytes of the stream, cut anywhere. After an error the scanner stops and
    /// returns that error again for every later feed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let outcome = self.scan(bytes);
        if let Err(error) = &outcome {
            self.failed = Some(error.clone());
        }
        outcome
    }

    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), RecordError> {
        while !bytes.is_empty() {
            match self.position {
                Position::Header(have) => {
                    let n = (RECORD_HEADER_LEN - have).min(bytes.len());
                    self.header[have..have + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if have + n < RECORD_HEADER_LEN {
                        self.position = Position::Header(have + n);
                        continue;
                    }
                    let (kind, len) = parse_header(&self.header)?;
                    if kind == ContentType::ChangeCipherSpec && !self.encrypted {
                        // Straight from ServerHello to ChangeCipherSpec: resumed.
                        if self.server_hello.is_some() && self.kind.is_none() {
                            self.kind = Some(HandshakeKind::Resumed);
                        }
                    }
                    self.position = Position::Body {
                        kind,
                        len,
                        remaining: len,
                    };
                    if len == 0 {
                        self.end_record(kind, len)?;
                    }
                }
                Position::Body {
                    kind,
                    len,
                    remaining,
                } => {
                    let n = remaining.min(bytes.len());
                    let (chunk, rest) = bytes.split_at(n);
                    bytes = rest;
                    if kind == ContentType::Handshake && !self.encrypted {
                        self.handshake_bytes.extend_from_slice(chunk);
                        self.take_messages()?;
                    }
                    if n == remaining {
                        self.end_record(kind, len)?;
                    } else {
                        self.position = Position::Body {
                            kind,
                            len,
                            remaining: remaining - n,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn end_record(&mut self, kind: ContentType, len: usize) -> Result<(), RecordError> {
        self.tally.of_mut(kind).add(len);
        self.position = Position::Header(0);
        if kind == ContentType::ChangeCipherSpec && !self.encrypted {
            self.encrypted = true;
            self.handshake_bytes.clear();
        }
        Ok(())
    }

    /// Moves every whole handshake message out of the reassembly buffer.
    fn take_messages(&mut self) -> Result<(), RecordError> {
        let mut start = 0;
        while self.handshake_bytes.len() - start >= 4 {
            let head = &self.handshake_bytes[start..start + 4];
            let len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
            if len > MAX_HANDSHAKE_MESSAGE {
                return Err(RecordError::HandshakeTooLong(len));
            }
            if self.handshake_bytes.len() - start < 4 + len {
                break;
            }
            let kind = HandshakeType::from_code(head[0]);
            let body = self.handshake_bytes[start + 4..start + 4 + len].to_vec();
            start += 4 + len;
            self.message(kind, &body)?;
        }
        self.handshake_bytes.drain(..start);
        // A message's type byte decides full or resumed before its body arrives.
        if let Some(&code) = self.handshake_bytes.first() {
            self.decide_kind(HandshakeType::from_code(code));
        }
        Ok(())
    }

    /// Full or resumed, from the type of a message after the ServerHello.
    fn decide_kind(&mut self, kind: HandshakeType) {
        if self.server_hello.is_none() || self.kind.is_some() {
            return;
        }
        self.kind = match kind {
            HandshakeType::Certificate
            | HandshakeType::ServerKeyExchange
            | HandshakeType::CertificateRequest
            | HandshakeType::ServerHelloDone => Some(HandshakeKind::Full),
            HandshakeType::NewSessionTicket => Some(HandshakeKind::Resumed),
            _ => None,
        };
    }

    fn message(&mut self, kind: HandshakeType, body: &[u8]) -> Result<(), RecordError> {
        self.messages.push(HandshakeMessage {
            kind,
            len: body.len(),
        });
        let bad = |error| RecordError::Hello {
            message: kind,
            error,
        };
        match kind {
            HandshakeType::ClientHello if self.client_hello.is_none() => {
                self.client_hello = Some(ClientHello::parse(body).map_err(bad)?);
            }
            HandshakeType::ServerHello if self.server_hello.is_none() => {
                self.server_hello = Some(ServerHello::parse(body).map_err(bad)?);
            }
            _ => self.decide_kind(kind),
        }
        Ok(())
    }

    /// Whole records so far, by content type.
    pub fn tally(&self) -> RecordTally {
        self.tally
    }

    /// Bytes of a record begun but not yet whole (header included), not in [`Self::tally`].
    pub fn partial_record_bytes(&self) -> usize {
        match self.position {
            Position::Header(have) => have,
            Position::Body { len, remaining, .. } => RECORD_HEADER_LEN + len - remaining,
        }
    }

    /// The cleartext handshake messages so far, in order.
    pub fn messages(&self) -> &[HandshakeMessage] {
        &self.messages
    }

    /// Whether this direction has sent its ChangeCipherSpec.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// The first ClientHello, once whole (on the client's direction).
    pub fn client_hello(&self) -> Option<&ClientHello> {
        self.client_hello.as_ref()
    }

    /// The first ServerHello, once whole (on the server's direction).
    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.server_hello.as_ref()
    }

    /// On the server's direction: full or resumed, as soon as what follows the ServerHello
    /// says so (the next message's type byte: Certificate, ServerKeyExchange,
    /// CertificateRequest or ServerHelloDone mean full, NewSessionTicket resumed; or a
    /// ChangeCipherSpec record: resumed). `None` before, and always on the client's direction.
    pub fn handshake_kind(&self) -> Option<HandshakeKind> {
        self.kind
    }
}

fn parse_header(header: &[u8; RECORD_HEADER_LEN]) -> Result<(ContentType, usize), RecordError> {
    let kind =
        ContentType::from_code(header[0]).ok_or(RecordError::UnknownContentType(header[0]))?;
    let version = u16::from_be_bytes([header[1], header[2]]);
    if header[1] != 3 {
        return Err(RecordError::NotTls(version));
    }
    let len = u16::from_be_bytes([header[3], header[4]]) as usize;
    if len > MAX_RECORD_BODY {
        return Err(RecordError::RecordTooLong(len));
    }
    Ok((kind, len))
}

/// What TLS 1.2 adds to each application-data record of an AEAD suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordOverhead {
    /// The record header: 5 B.
    pub header: usize,
    /// The explicit nonce before the ciphertext: 8 B for AES-GCM and AES-CCM, none for
    /// ChaCha20-Poly1305 (RFC 7905 derives its nonce from the sequence number).
    pub explicit_nonce: usize,
    /// The authentication tag: 16 B (8 B for the CCM_8 suites).
    pub tag: usize,
}

impl RecordOverhead {
    /// Bytes per record beyond the plaintext.
    pub fn total(&self) -> usize {
        self.header + self.explicit_nonce + self.tag
    }
}

/// The per-record overhead of a TLS 1.2 AEAD cipher suite (AES-GCM: 5 + 8 + 16 = 29 B;
/// ChaCha20-Poly1305: 5 + 16 = 21 B; AES-CCM 29 B, AES-CCM_8 21 B), or `None` for a suite
/// that is not AEAD (CBC suites pad to the block, so their overhead varies) or is unknown.
pub fn aead_record_overhead(suite: u16) -> Option<RecordOverhead> {
    let (explicit_nonce, tag) = match suite {
        // AES-GCM (RFC 5288, RFC 5289): RSA, DHE_RSA, ECDHE/ECDH with ECDSA/RSA.
        0x009C..=0x009F | 0xC02B..=0xC032 => (8, 16),
        // ChaCha20-Poly1305 (RFC 7905): ECDHE_RSA, ECDHE_ECDSA, DHE_RSA.
        0xCCA8..=0xCCAA => (0, 16),
        // AES-CCM (RFC 6655, RFC 7251): RSA and ECDHE_ECDSA, 16-byte tags.
        0xC09C | 0xC09D | 0xC0AC | 0xC0AD => (8, 16),
        // AES-CCM_8: 8-byte tags.
        0xC0A0 | 0xC0A1 | 0xC0AE | 0xC0AF => (8, 8),
        _ => return None,
    };
    Some(RecordOverhead {
        header: RECORD_HEADER_LEN,
        explicit_nonce,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, 3, 3];
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(body);
        out
    }

    /// A ServerHello body: TLS 1.2, a random of 0xAA, `session_id`, the suite, no
    /// compression, then the extensions (none: no extension block at all).
    fn server_hello_body(session_id: &[u8], suite: u16, extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = vec![3, 3];
        out.extend_from_slice(&[0xAA; 32]);
        out.push(session_id.len() as u8);
        out.extend_from_slice(session_id);
        out.extend_from_slice(&suite.to_be_bytes());
        out.push(0);
        if !extensions.is_empty() {
            let mut block = Vec::new();
            for (kind, data) in extensions {
                block.extend_from_slice(&kind.to_be_bytes());
                block.extend_from_slice(&(data.len() as u16).to_be_bytes());
                block.extend_from_slice(data);
            }
            out.extend_from_slice(&(block.len() as u16).to_be_bytes());
            out.extend_from_slice(&block);
        }
        out
    }

    /// The server's side of a full TLS 1.2 handshake: ServerHello, Certificate,
    /// ServerKeyExchange and ServerHelloDone in one record (as rustls writes a flight), then
    /// ChangeCipherSpec, an encrypted Finished, and one application record.
    fn full_server_flight() -> Vec<u8> {
        let mut hs = message(2, &server_hello_body(&[7; 32], 0xCCA9, &[(0xFF01, &[0])]));
        hs.extend(message(11, &[0x55; 300]));
        hs.extend(message(12, &[0x66; 100]));
        hs.extend(message(14, &[]));
        let mut out = record(22, &hs);
        out.extend(record(20, &[1]));
        out.extend(record(22, &[0x77; 32]));
        out.extend(record(23, &[0x88; 40]));
        out
    }

    #[test]
    fn tls_scanner_counts_a_full_flight_whatever_the_cuts() {
        let stream = full_server_flight();
        let hello = server_hello_body(&[7; 32], 0xCCA9, &[(0xFF01, &[0])]).len();
        let hs_body = 4 + hello + 4 + 300 + 4 + 100 + 4;
        for cut in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut scanner = RecordScanner::new();
            for chunk in stream.chunks(cut) {
                scanner.feed(chunk).unwrap();
            }
            let tally = scanner.tally();
            assert_eq!(
                tally.handshake,
                RecordCount {
                    records: 2,
                    bytes: (5 + hs_body + 5 + 32) as u64,
                    body_bytes: (hs_body + 32) as u64
                },
                "cut {cut}"
            );
            assert_eq!(
                tally.change_cipher_spec,
                RecordCount {
                    records: 1,
                    bytes: 6,
                    body_bytes: 1
                }
            );
            assert_eq!(
                tally.application_data,
                RecordCount {
                    records: 1,
                    bytes: 45,
                    body_bytes: 40
                }
            );
            assert_eq!(tally.total().bytes, stream.len() as u64);
            let kinds: Vec<_> = scanner.messages().iter().map(|m| m.kind).collect();
            assert_eq!(
                kinds,
                [
                    HandshakeType::ServerHello,
                    HandshakeType::Certificate,
                    HandshakeType::ServerKeyExchange,
                    HandshakeType::ServerHelloDone
                ],
                "the encrypted Finished is not read as a message"
            );
            assert_eq!(scanner.handshake_kind(), Some(HandshakeKind::Full));
            assert_eq!(scanner.server_hello().unwrap().cipher_suite, 0xCCA9);
            assert!(scanner.encrypted());
            assert_eq!(scanner.partial_record_bytes(), 0);
        }
    }

    #[test]
    fn tls_scanner_reassembles_a_message_spanning_records() {
        // A Certificate message of 3,000 B split over two records, the second of which also
        // carries ServerHelloDone.
        let cert = message(11, &[0x42; 3000]);
        let mut stream = record(22, &message(2, &server_hello_body(&[], 0xC02B, &[])));
        stream.extend(record(22, &cert[..1000]));
        let mut second = cert[1000..].to_vec();
        second.extend(message(14, &[]));
        stream.extend(record(22, &second));
        let mut scanner = RecordScanner::new();
        scanner.feed(&stream).unwrap();
        assert_eq!(
            scanner.messages(),
            [
                HandshakeMessage {
                    kind: HandshakeType::ServerHello,
                    len: 38
                },
                HandshakeMessage {
                    kind: HandshakeType::Certificate,
                    len: 3000
                },
                HandshakeMessage {
                    kind: HandshakeType::ServerHelloDone,
                    len: 0
                },
            ]
        );
        assert_eq!(scanner.tally().handshake.records, 3);
        assert_eq!(scanner.handshake_kind(), Some(HandshakeKind::Full));
    }

    #[test]
    fn tls_scanner_tells_a_resumed_handshake_at_the_change_cipher_spec() {
        let id = [9; 32];
        let hello = record(22, &message(2, &server_hello_body(&id, 0xC02F, &[])));
        let mut scanner = RecordScanner::new();
        scanner.feed(&hello).unwrap();
        assert_eq!(
            scanner.handshake_kind(),
            None,
            "a ServerHello alone decides nothing"
        );
        scanner.feed(&record(20, &[1])[..3]).unwrap();
        assert_eq!(
            scanner.handshake_kind(),
            None,
            "nor part of a record header"
        );
        scanner.feed(&record(20, &[1])[3..5]).unwrap();
        assert_eq!(
            scanner.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "a ChangeCipherSpec header is enough"
        );
        assert!(!scanner.encrypted(), "until its body is through");
        scanner.feed(&record(20, &[1])[5..]).unwrap();
        assert!(scanner.encrypted());
        assert_eq!(scanner.server_hello().unwrap().session_id, id);
        // A Certificate-looking encrypted record afterwards changes nothing.
        scanner.feed(&record(22, &message(11, &[0; 10]))).unwrap();
        assert_eq!(scanner.handshake_kind(), Some(HandshakeKind::Resumed));
        assert_eq!(scanner.messages().len(), 1);
    }

    #[test]
    fn tls_scanner_on_the_client_side_sees_its_hello_and_key_exchange_and_decides_no_kind() {
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[1; 32]);
        hello.extend_from_slice(&[0, 0, 4, 0xCC, 0xA9, 0xC0, 0x2B, 1, 0]);
        let mut stream = record(22, &message(1, &hello));
        stream.extend(record(22, &message(16, &[0x20; 33])));
        stream.extend(record(20, &[1]));
        stream.extend(record(22, &[0; 32]));
        let mut scanner = RecordScanner::new();
        for b in &stream {
            scanner.feed(std::slice::from_ref(b)).unwrap();
        }
        let client = scanner.client_hello().unwrap();
        assert_eq!(client.cipher_suites, [0xCCA9, 0xC02B]);
        assert!(client.extensions.is_empty());
        let kinds: Vec<_> = scanner.messages().iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [HandshakeType::ClientHello, HandshakeType::ClientKeyExchange]
        );
        assert_eq!(scanner.handshake_kind(), None);
    }

    #[test]
    fn tls_scanner_refuses_bad_records_with_a_typed_error_and_stays_stopped() {
        let mut scanner = RecordScanner::new();
        assert_eq!(
            scanner.feed(&[24, 3, 3, 0, 0]),
            Err(RecordError::UnknownContentType(24))
        );
        assert_eq!(
            scanner.feed(&record(23, &[])),
            Err(RecordError::UnknownContentType(24))
        );

        let mut scanner = RecordScanner::new();
        let too_long = (MAX_RECORD_BODY + 1) as u16;
        let mut header = vec![23, 3, 3];
        header.extend_from_slice(&too_long.to_be_bytes());
        assert_eq!(
            scanner.feed(&header),
            Err(RecordError::RecordTooLong(MAX_RECORD_BODY + 1))
        );

        let mut scanner = RecordScanner::new();
        assert_eq!(
            scanner.feed(b"GET / HTTP/1.1\r\n"),
            Err(RecordError::UnknownContentType(b'G'))
        );

        let mut scanner = RecordScanner::new();
        assert_eq!(
            scanner.feed(&[22, 0x47, 0x45, 0, 1, 0]),
            Err(RecordError::NotTls(0x4745))
        );

        // A longest-allowed record is fine.
        let mut scanner = RecordScanner::new();
        scanner
            .feed(&record(23, &vec![0; MAX_RECORD_BODY]))
            .unwrap();
        assert_eq!(scanner.tally().application_data.records, 1);

        // A ServerHello with a 33-byte session id.
        let mut scanner = RecordScanner::new();
        let bad = record(22, &message(2, &server_hello_body(&[0; 33], 0xC02B, &[])));
        assert_eq!(
            scanner.feed(&bad),
            Err(RecordError::Hello {
                message: HandshakeType::ServerHello,
                error: HelloError::SessionIdTooLong(33)
            })
        );

        // A cleartext handshake message announcing 16 MiB.
        let mut scanner = RecordScanner::new();
        assert_eq!(
            scanner.feed(&record(22, &[11, 0xFF, 0xFF, 0xFF])),
            Err(RecordError::HandshakeTooLong(0xFF_FFFF))
        );
    }

    #[test]
    fn tls_scanner_keeps_a_partial_record_out_of_the_tally() {
        let mut scanner = RecordScanner::new();
        scanner.feed(&record(23, &[1; 10])[..8]).unwrap();
        assert_eq!(scanner.tally().application_data.records, 0);
        assert_eq!(scanner.partial_record_bytes(), 8);
    }

    #[test]
    fn tls_server_hello_reads_max_fragment_length_and_refuses_a_bad_one() {
        let body = server_hello_body(&[], 0xCCA8, &[(0xFF01, &[0]), (1, &[2])]);
        let hello = ServerHello::parse(&body).unwrap();
        assert_eq!(hello.version, 0x0303);
        assert_eq!(hello.cipher_suite, 0xCCA8);
        assert_eq!(
            hello.max_fragment_length,
            Some(MaxFragmentLength::Bytes1024)
        );
        assert_eq!(hello.extensions.len(), 2);
        assert_eq!(
            hello.extension(extension::RENEGOTIATION_INFO).unwrap().data,
            [0]
        );

        let body = server_hello_body(&[], 0xCCA8, &[(1, &[5])]);
        assert_eq!(
            ServerHello::parse(&body),
            Err(HelloError::BadMaxFragmentLength(vec![5]))
        );
        let mut body = server_hello_body(&[], 0xCCA8, &[(1, &[1])]);
        body.push(0);
        assert_eq!(ServerHello::parse(&body), Err(HelloError::TrailingBytes(1)));
        assert_eq!(
            ServerHello::parse(&body[..20]),
            Err(HelloError::Truncated("random"))
        );
    }

    /// A ClientHello rustls 0.23.46 (ring provider, TLS 1.2 only, session-id resumption, a
    /// certificate verifier that accepts anything) wrote for `ServerName` "127.0.0.1", captured
    /// from `ClientConnection::write_tls` into a `Vec`. rustls sends no SNI for an IP address.
    const RUSTLS_CLIENT_HELLO_FOR_AN_IP: &str = "160301007f0100007b0303a8af4a81ae4b0e9f7a9b7940dc\
        b2af263d35fec057d7f25f4f72a82dec9b756c000014130213011303c02cc02bcca9c030c02fcca800ff0100\
        003e000b00020100000500050100000000000d0014001205030403080708060805080406010501040100\
        2b0003020303000a00080006001d0017001800170000";

    fn unhex(hex: &str) -> Vec<u8> {
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tls_client_hello_parses_what_rustls_sends() {
        let bytes = unhex(RUSTLS_CLIENT_HELLO_FOR_AN_IP);
        assert_eq!(bytes.len(), 132);
        let mut scanner = RecordScanner::new();
        scanner.feed(&bytes).unwrap();
        let hello = scanner.client_hello().unwrap();
        assert_eq!(hello.version, 0x0303);
        assert!(hello.session_id.is_empty());
        // Its TLS 1.3 suites are listed even with TLS 1.2 alone enabled, then the six
        // TLS 1.2 suites and the renegotiation SCSV.
        assert_eq!(
            hello.cipher_suites,
            [0x1302, 0x1301, 0x1303, 0xC02C, 0xC02B, 0xCCA9, 0xC030, 0xC02F, 0xCCA8, 0x00FF]
        );
        assert_eq!(hello.server_name, None);
        assert_eq!(hello.max_fragment_length, None);
        assert!(hello.extension(extension::SESSION_TICKET).is_none());
        assert!(hello.extension(extension::EXTENDED_MASTER_SECRET).is_some());
        assert_eq!(scanner.tally().handshake.bytes, 132);
    }

    /// What rustls 0.23.46 (ring, TLS 1.2 only, a self-signed ECDSA P-256 certificate from
    /// rcgen) wrote back to the board's default ClientHello (`bearssl::client_hello`, no
    /// server name), captured in memory from a `ServerConnection`: the record header (563 B of
    /// body) and the ServerHello, cut there; the Certificate, ServerKeyExchange and
    /// ServerHelloDone follow in the same record.
    const RUSTLS_SERVER_HELLO_TO_THE_BOARD: &str = "16030302330200004d03030780f9b993f302b9\
        f34375cff04f13233c802d476485a486fe0442f7b0cef1dc20bcc9592dc1915a2ac1b0ba3c83814f424125\
        b70506a1564d5f9d82d859f5ed1acca9000005ff01000100";

    #[test]
    fn tls_scanner_reads_the_server_hello_rustls_sends_the_board_before_its_record_ends() {
        let bytes = unhex(RUSTLS_SERVER_HELLO_TO_THE_BOARD);
        let mut scanner = RecordScanner::new();
        scanner.feed(&bytes).unwrap();
        let hello = scanner.server_hello().unwrap();
        assert_eq!(hello.version, 0x0303);
        assert_eq!(hello.cipher_suite, 0xCCA9, "the board's first choice");
        assert_eq!(hello.session_id.len(), 32, "an id to resume by");
        assert_eq!(
            hello.max_fragment_length, None,
            "rustls ignores the board's request"
        );
        let kinds: Vec<u16> = hello.extensions.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [extension::RENEGOTIATION_INFO]);
        assert_eq!(
            scanner.messages(),
            [HandshakeMessage {
                kind: HandshakeType::ServerHello,
                len: 77
            }]
        );
        assert_eq!(
            scanner.handshake_kind(),
            None,
            "undecided until the next message"
        );
        assert_eq!(scanner.partial_record_bytes(), bytes.len());
        assert_eq!(scanner.tally().total().records, 0);
        // The next message's type byte is enough.
        scanner.feed(&[11]).unwrap();
        assert_eq!(scanner.handshake_kind(), Some(HandshakeKind::Full));
    }

    #[test]
    fn tls_record_overhead_by_suite() {
        assert_eq!(aead_record_overhead(0xC02B).unwrap().total(), 29);
        assert_eq!(aead_record_overhead(0xC030).unwrap().total(), 29);
        assert_eq!(aead_record_overhead(0x009C).unwrap().total(), 29);
        assert_eq!(aead_record_overhead(0xCCA9).unwrap().total(), 21);
        assert_eq!(aead_record_overhead(0xCCA8).unwrap().explicit_nonce, 0);
        assert_eq!(aead_record_overhead(0xC0AC).unwrap().total(), 29);
        assert_eq!(aead_record_overhead(0xC0AE).unwrap().total(), 21);
        assert_eq!(aead_record_overhead(0xC013), None, "CBC pads to the block");
        assert_eq!(aead_record_overhead(0x1301), None, "TLS 1.3 records differ");
    }

    #[test]
    fn tls_max_fragment_length_codes() {
        for m in MaxFragmentLength::ALL {
            assert_eq!(MaxFragmentLength::from_code(m.code()), Some(m));
            assert_eq!(MaxFragmentLength::from_bytes(m.bytes()), Some(m));
        }
        assert_eq!(MaxFragmentLength::Bytes512.bytes(), 512);
        assert_eq!(MaxFragmentLength::Bytes4096.bytes(), 4096);
        assert_eq!(MaxFragmentLength::from_code(0), None);
        assert_eq!(MaxFragmentLength::from_bytes(8192), None);
    }
}
