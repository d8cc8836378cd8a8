//! SPDY/3.1 framing and a small session layer, both sides, as Kubernetes' streaming protocols
//! (`exec`, `attach`, `portforward` over `Upgrade: SPDY/3.1`) use it.
//!
//! No maintained Rust crate implements the server side of SPDY/3.1, so this is written from the
//! SPDY/3 draft and from what Go's `moby/spdystream` (the library kubectl and client-go use) puts
//! on the wire:
//!
//! * control frames carry version 3; header blocks are one zlib stream per direction and
//!   connection, primed with the SPDY/3 dictionary and sync-flushed after every block; names and
//!   values have 32-bit lengths and repeated values are joined with NUL;
//! * every stream the peer opens is answered with a SYN_REPLY (the Go side waits for it);
//! * spdystream keeps no flow-control windows (it neither honours nor sends WINDOW_UPDATE), so
//!   neither does this: WINDOW_UPDATE and SETTINGS are read and ignored;
//! * PINGs the peer starts (odd ids from a client, even from a server) are echoed.
//!
//! [`Session`] runs a reader and a writer task over any byte stream; both sides use it (the
//! kubelet simulator as server, tests and future WebSocket-to-SPDY translation as client).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

/// The SPDY version in every control frame.
pub const VERSION: u16 = 3;

/// FIN flag (control frames and DATA frames alike).
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL flag of SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes used here.
pub mod rst {
    /// PROTOCOL_ERROR.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// REFUSED_STREAM.
    pub const REFUSED_STREAM: u32 = 3;
    /// CANCEL.
    pub const CANCEL: u32 = 5;
    /// INTERNAL_ERROR.
    pub const INTERNAL_ERROR: u32 = 6;
}

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Largest frame payload accepted (the 24-bit length field allows 16 MiB).
const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// Header names (lowercase) and values, in order; a name may repeat.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The zlib dictionary of SPDY/3 header compression (1423 bytes): length-prefixed common header
/// words, then a run of common value text.
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505",
            "203 Non-Authoritative Information",
            "204 No Content",
            "301 Moved Permanently",
            "400 Bad Request",
            "401 Unauthorized",
            "403 Forbidden",
            "404 Not Found",
            "500 Internal Server Error",
            "501 Not Implemented",
            "503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
            " 00:00:00",
            " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,public",
            "privatemax-age=gzip,deflate,sdch",
            "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut d = Vec::with_capacity(1423);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// New stream id (odd from a client, even from a server).
        stream_id: u32,
        /// Associated stream (0: none).
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// FIN / UNIDIRECTIONAL.
        flags: u8,
        /// Stream headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// Stream id.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// Stream id.
        stream_id: u32,
        /// Status code, see [`rst`].
        status: u32,
    },
    /// Session settings: (flags, id, value).
    Settings {
        /// CLEAR_SETTINGS.
        flags: u8,
        /// Entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// Liveness probe; echoed by the receiver.
    Ping {
        /// Ping id.
        id: u32,
    },
    /// The sender takes no more streams.
    GoAway {
        /// Last stream the sender handled.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// Stream id.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// Flow-control credit.
    WindowUpdate {
        /// Stream id (0: session).
        stream_id: u32,
        /// Credit in bytes.
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// Stream id.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Bytes.
        data: Bytes,
    },
    /// A control frame of a type this framer does not know (skipped).
    Unknown {
        /// The type field.
        kind: u16,
    },
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Writes frames, compressing header blocks with one zlib stream.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// A fresh encoder (its zlib stream starts with the SPDY dictionary).
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(dictionary())
            .expect("setting the zlib dictionary on a fresh stream");
        Self { zlib }
    }

    fn header_block(&mut self, headers: &Headers) -> io::Result<Vec<u8>> {
        // Merge repeated names into one NUL-separated value, keeping first-seen order.
        let mut merged: Vec<(String, String)> = Vec::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            match merged.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => {
                    v.push('\0');
                    v.push_str(value);
                }
                None => merged.push((name, value.clone())),
            }
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(&(merged.len() as u32).to_be_bytes());
        for (n, v) in &merged {
            raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
            raw.extend_from_slice(n.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 128);
        let start = self.zlib.total_in();
        for _ in 0..1024 {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let done = (self.zlib.total_in() - start) as usize;
            self.zlib
                .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| bad(format!("header compression: {e}")))?;
            let done = (self.zlib.total_in() - start) as usize;
            if done == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
        Err(bad("header compression made no progress"))
    }

    /// Appends the encoding of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> io::Result<()> {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]| {
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            let len = payload.len() as u32;
            out.extend_from_slice(&((u32::from(flags) << 24) | len).to_be_bytes());
            out.extend_from_slice(payload);
        };
        match frame {
            Frame::SynStream {
                stream_id,
                associated,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x7) << 5);
                p.push(0); // credential slot
                p.extend_from_slice(&self.header_block(headers)?);
                control(out, TYPE_SYN_STREAM, *flags, &p);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&self.header_block(headers)?);
                control(out, kind, *flags, &p);
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&status.to_be_bytes());
                control(out, TYPE_RST_STREAM, 0, &p);
            }
            Frame::Settings { flags, entries } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for (f, id, value) in entries {
                    p.extend_from_slice(&((u32::from(*f) << 24) | (id & 0xff_ffff)).to_be_bytes());
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(out, TYPE_SETTINGS, *flags, &p);
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(last_good & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&status.to_be_bytes());
                control(out, TYPE_GOAWAY, 0, &p);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(out, TYPE_WINDOW_UPDATE, 0, &p);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(bad("data frame too large"));
                }
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(
                    &((u32::from(*flags) << 24) | data.len() as u32).to_be_bytes(),
                );
                out.extend_from_slice(data);
            }
            Frame::Unknown { kind } => return Err(bad(format!("cannot encode frame type {kind}"))),
        }
        Ok(())
    }
}

/// Reads frames, decompressing header blocks with one zlib stream.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    fn header_block(&mut self, input: &[u8]) -> io::Result<Headers> {
        let mut raw = Vec::with_capacity(input.len() * 4 + 256);
        let start = self.zlib.total_in();
        let mut finished = false;
        for _ in 0..4096 {
            if raw.len() == raw.capacity() {
                raw.reserve(raw.capacity().max(256));
            }
            let done = (self.zlib.total_in() - start) as usize;
            match self
                .zlib
                .decompress_vec(&input[done..], &mut raw, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| bad(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(bad(format!("header decompression: {e}"))),
            }
            let done = (self.zlib.total_in() - start) as usize;
            if done == input.len() && raw.len() < raw.capacity() {
                finished = true;
                break;
            }
        }
        if !finished {
            return Err(bad("header decompression made no progress"));
        }
        parse_header_block(&raw)
    }

    /// Decodes one frame from `head` (its 8 header bytes) and `payload`.
    pub fn decode(&mut self, head: [u8; 8], payload: Vec<u8>) -> io::Result<Frame> {
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let u32_at = |p: &[u8], at: usize| -> io::Result<u32> {
            p.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("short frame"))
        };
        if word & 0x8000_0000 == 0 {
            return Ok(Frame::Data {
                stream_id: word & 0x7fff_ffff,
                flags,
                data: Bytes::from(payload),
            });
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(bad(format!("unsupported SPDY version {version}")));
        }
        let kind = (word & 0xffff) as u16;
        let p = &payload[..];
        Ok(match kind {
            TYPE_SYN_STREAM => {
                if p.len() < 10 {
                    return Err(bad("short SYN_STREAM"));
                }
                Frame::SynStream {
                    stream_id: u32_at(p, 0)? & 0x7fff_ffff,
                    associated: u32_at(p, 4)? & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: self.header_block(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let stream_id = u32_at(p, 0)? & 0x7fff_ffff;
                let headers = self.header_block(&p[4..])?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => Frame::RstStream {
                stream_id: u32_at(p, 0)? & 0x7fff_ffff,
                status: u32_at(p, 4)?,
            },
            TYPE_SETTINGS => {
                let n = u32_at(p, 0)? as usize;
                let mut entries = Vec::with_capacity(n.min(64));
                for i in 0..n {
                    let idw = u32_at(p, 4 + i * 8)?;
                    entries.push(((idw >> 24) as u8, idw & 0xff_ffff, u32_at(p, 8 + i * 8)?));
                }
                Frame::Settings { flags, entries }
            }
            TYPE_PING => Frame::Ping { id: u32_at(p, 0)? },
            TYPE_GOAWAY => Frame::GoAway {
                last_good: u32_at(p, 0)? & 0x7fff_ffff,
                status: u32_at(p, 4).unwrap_or(0),
            },
            TYPE_WINDOW_UPDATE => Frame::WindowUpdate {
                stream_id: u32_at(p, 0)? & 0x7fff_ffff,
                delta: u32_at(p, 4)? & 0x7fff_ffff,
            },
            other => Frame::Unknown { kind: other },
        })
    }

    /// Reads the next frame; `None` on a clean end of input at a frame boundary.
    pub async fn read_frame<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 8];
        let mut got = 0;
        while got < head.len() {
            let n = r.read(&mut head[got..]).await?;
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
            got += n;
        }
        let len = (u32::from_be_bytes([0, head[5], head[6], head[7]])) as usize;
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        self.decode(head, payload).map(Some)
    }
}

fn parse_header_block(raw: &[u8]) -> io::Result<Headers> {
    let mut at = 0usize;
    let take_u32 = |at: &mut usize| -> io::Result<u32> {
        let b = raw
            .get(*at..*at + 4)
            .ok_or_else(|| bad("short header block"))?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let n = take_u32(&mut at)?;
    let mut headers = Vec::new();
    for _ in 0..n {
        let len = take_u32(&mut at)? as usize;
        let name = raw
            .get(at..at + len)
            .ok_or_else(|| bad("short header name"))?;
        at += len;
        let len = take_u32(&mut at)? as usize;
        let value = raw
            .get(at..at + len)
            .ok_or_else(|| bad("short header value"))?;
        at += len;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        for v in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(headers)
}

enum Out {
    Frame(Frame),
    /// Send GOAWAY, flush and shut the write side down.
    GoAway,
}

#[derive(Default)]
struct Slot {
    data: Option<mpsc::UnboundedSender<Bytes>>,
    reply: Option<oneshot::Sender<Headers>>,
}

struct Inner {
    server: bool,
    streams: Mutex<HashMap<u32, Slot>>,
    next_id: AtomicU32,
    last_peer_id: AtomicU32,
}

/// One end of a SPDY session over a byte stream (after the HTTP upgrade).
pub struct Session {
    out: mpsc::UnboundedSender<Out>,
    accept: mpsc::UnboundedReceiver<Stream>,
    inner: Arc<Inner>,
    closed: watch::Receiver<bool>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("server", &self.inner.server)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the reader and writer tasks. `server` decides the stream-id and ping-id parity.
    pub fn new<T>(io: T, server: bool) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (accept_tx, accept) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(false);
        let inner = Arc::new(Inner {
            server,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(if server { 2 } else { 1 }),
            last_peer_id: AtomicU32::new(0),
        });
        tokio::spawn(write_loop(wr, out_rx));
        tokio::spawn(read_loop(
            rd,
            inner.clone(),
            out_tx.clone(),
            accept_tx,
            closed_tx,
        ));
        Self {
            out: out_tx,
            accept,
            inner,
            closed,
        }
    }

    /// The next stream the peer opened; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.accept.recv().await
    }

    /// Opens a stream (the peer answers with SYN_REPLY, see [`Stream::wait_reply`]).
    pub fn open(&self, headers: Headers, fin: bool) -> Stream {
        let id = self.inner.next_id.fetch_add(2, Ordering::Relaxed);
        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        self.inner.streams.lock().unwrap().insert(
            id,
            Slot {
                data: Some(data_tx),
                reply: Some(reply_tx),
            },
        );
        let _ = self.out.send(Out::Frame(Frame::SynStream {
            stream_id: id,
            associated: 0,
            priority: 0,
            flags: if fin { FLAG_FIN } else { 0 },
            headers: headers.clone(),
        }));
        Stream {
            headers,
            reader: StreamReader { data: data_rx },
            writer: StreamWriter {
                id,
                out: self.out.clone(),
            },
            reply: Some(reply_rx),
        }
    }

    /// Sends a PING (ids of this side's parity).
    pub fn ping(&self, id: u32) {
        let _ = self.out.send(Out::Frame(Frame::Ping { id }));
    }

    /// Whether the peer's side of the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the peer's side of the connection has ended (EOF or error).
    pub async fn closed(&self) {
        let mut rx = self.closed.clone();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Sends GOAWAY and shuts the write side down once everything queued is written.
    pub fn go_away(&self) {
        let _ = self.out.send(Out::GoAway);
    }

    /// A watch that turns `true` when the peer's side has ended.
    pub fn closed_watch(&self) -> watch::Receiver<bool> {
        self.closed.clone()
    }

    /// Whether this end is the server.
    pub fn is_server(&self) -> bool {
        self.inner.server
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut enc = Encoder::new();
    let mut buf = Vec::new();
    let mut last_good = 0;
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut goaway = false;
        let mut next = Some(first);
        // Batch what is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Out::Frame(f) => {
                    if let Frame::SynReply { stream_id, .. } = &f {
                        last_good = *stream_id;
                    }
                    if enc.encode(&f, &mut buf).is_err() {
                        return;
                    }
                }
                Out::GoAway => {
                    let _ = enc.encode(
                        &Frame::GoAway {
                            last_good,
                            status: 0,
                        },
                        &mut buf,
                    );
                    goaway = true;
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        if goaway {
            let _ = wr.shutdown().await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    inner: Arc<Inner>,
    out: mpsc::UnboundedSender<Out>,
    accept: mpsc::UnboundedSender<Stream>,
    closed: watch::Sender<bool>,
) {
    let mut dec = Decoder::new();
    let peer_parity = if inner.server { 1 } else { 0 };
    loop {
        let frame = match dec.read_frame(&mut rd).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "spdy read ended");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if stream_id % 2 != peer_parity || stream_id == 0 {
                    let _ = out.send(Out::Frame(Frame::RstStream {
                        stream_id,
                        status: rst::PROTOCOL_ERROR,
                    }));
                    continue;
                }
                inner.last_peer_id.store(stream_id, Ordering::Relaxed);
                let (data_tx, data_rx) = mpsc::unbounded_channel();
                let data = (flags & FLAG_FIN == 0).then_some(data_tx);
                inner
                    .streams
                    .lock()
                    .unwrap()
                    .insert(stream_id, Slot { data, reply: None });
                let stream = Stream {
                    headers,
                    reader: StreamReader { data: data_rx },
                    writer: StreamWriter {
                        id: stream_id,
                        out: out.clone(),
                    },
                    reply: None,
                };
                if accept.send(stream).is_err() {
                    let _ = out.send(Out::Frame(Frame::RstStream {
                        stream_id,
                        status: rst::REFUSED_STREAM,
                    }));
                }
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut streams = inner.streams.lock().unwrap();
                if let Some(slot) = streams.get_mut(&stream_id) {
                    if let Some(tx) = slot.reply.take() {
                        let _ = tx.send(headers);
                    }
                    if flags & FLAG_FIN != 0 {
                        slot.data = None;
                    }
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let mut streams = inner.streams.lock().unwrap();
                if let Some(slot) = streams.get_mut(&stream_id) {
                    if !data.is_empty()
                        && let Some(tx) = &slot.data
                    {
                        let _ = tx.send(data);
                    }
                    if flags & FLAG_FIN != 0 {
                        slot.data = None;
                    }
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } => {
                if flags & FLAG_FIN != 0
                    && let Some(slot) = inner.streams.lock().unwrap().get_mut(&stream_id)
                {
                    slot.data = None;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                inner.streams.lock().unwrap().remove(&stream_id);
            }
            Frame::Ping { id } => {
                if id % 2 == peer_parity {
                    let _ = out.send(Out::Frame(Frame::Ping { id }));
                }
            }
            Frame::GoAway { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    inner.streams.lock().unwrap().clear();
    drop(accept);
    let _ = closed.send(true);
}

/// A stream of a [`Session`]: its headers, its incoming data and a handle to write.
pub struct Stream {
    /// The SYN_STREAM headers (for streams the peer opened) or those sent (for our own).
    pub headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
    reply: Option<oneshot::Receiver<Headers>>,
}

impl Stream {
    /// Header `name` of the stream.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The stream id.
    pub fn id(&self) -> u32 {
        self.writer.id
    }

    /// Waits for the peer's SYN_REPLY to a stream this side opened.
    pub async fn wait_reply(&mut self) -> io::Result<Headers> {
        match self.reply.take() {
            Some(rx) => rx
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::ConnectionReset, "stream reset")),
            None => Ok(Vec::new()),
        }
    }

    /// The writing half (cloneable).
    pub fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }

    /// Next chunk of incoming data; `None` after the peer's FIN, a reset or connection loss.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.reader.recv().await
    }

    /// Reads everything until the peer's FIN.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        self.reader.read_to_end().await
    }

    /// Splits into reading and writing halves.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

/// Incoming data of a stream.
pub struct StreamReader {
    data: mpsc::UnboundedReceiver<Bytes>,
}

impl StreamReader {
    /// Next chunk; `None` after the peer's FIN, a reset or connection loss.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.data.recv().await
    }

    /// Reads everything until the peer's FIN.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(b) = self.recv().await {
            all.extend_from_slice(&b);
        }
        all
    }
}

/// Writes to one stream; frames are queued in order on the session's writer.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::UnboundedSender<Out>,
}

impl StreamWriter {
    /// The stream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Queues a DATA frame (split at 32 KiB); `false` once the session writer is gone.
    pub fn write(&self, data: &[u8]) -> bool {
        for chunk in data.chunks(32 * 1024) {
            if self
                .out
                .send(Out::Frame(Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: Bytes::copy_from_slice(chunk),
                }))
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Half-closes this side of the stream (empty DATA frame with FIN).
    pub fn close(&self) {
        let _ = self.out.send(Out::Frame(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        }));
    }

    /// Accepts a stream the peer opened (SYN_REPLY, optionally with FIN).
    pub fn reply(&self, fin: bool) {
        let _ = self.out.send(Out::Frame(Frame::SynReply {
            stream_id: self.id,
            flags: if fin { FLAG_FIN } else { 0 },
            headers: Vec::new(),
        }));
    }

    /// Aborts the stream.
    pub fn reset(&self, status: u32) {
        let _ = self.out.send(Out::Frame(Frame::RstStream {
            stream_id: self.id,
            status,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
        assert!(d.ends_with(b"enq=0."));
    }

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut dec = Decoder::new();
            let mut r = &wire[..];
            let mut got = Vec::new();
            while let Some(f) = dec.read_frame(&mut r).await.unwrap() {
                got.push(f);
            }
            got
        })
    }

    #[test]
    fn frames_roundtrip_with_one_zlib_stream_per_direction() {
        let h = |pairs: &[(&str, &str)]| -> Headers {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 0,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated: 0,
                priority: 2,
                flags: 0,
                headers: h(&[("streamtype", "stdin"), ("x", "a"), ("x", "b")]),
            },
            Frame::SynReply {
                stream_id: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping { id: 7 },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536)],
            },
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 100,
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Headers {
                stream_id: 1,
                flags: 0,
                headers: h(&[("a", "b")]),
            },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    /// Fixed-layout frames byte for byte (version 3, type, flags, 24-bit length).
    #[test]
    fn control_frame_layout() {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        enc.encode(&Frame::Ping { id: 1 }, &mut wire).unwrap();
        assert_eq!(
            wire,
            [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]
        );
        wire.clear();
        enc.encode(
            &Frame::Data {
                stream_id: 5,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"ab"),
            },
            &mut wire,
        )
        .unwrap();
        assert_eq!(wire, [0, 0, 0, 5, 0x01, 0, 0, 2, b'a', b'b']);
    }

    #[tokio::test]
    async fn sessions_talk_to_each_other() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client = Session::new(a, false);
        let mut server = Session::new(b, true);
        let mut s = client.open(vec![("streamtype".into(), "stdin".into())], false);
        let mut peer = server.accept().await.unwrap();
        assert_eq!(peer.header("streamtype"), Some("stdin"));
        peer.writer().reply(false);
        s.wait_reply().await.unwrap();
        s.writer().write(b"ping");
        s.writer().close();
        assert_eq!(peer.read_to_end().await, b"ping");
        peer.writer().write(b"pong");
        peer.writer().close();
        assert_eq!(s.read_to_end().await, b"pong");
        client.go_away();
        server.closed().await;
    }
}
