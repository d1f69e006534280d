//! WebTransport in the browser: the `wt` stack, mapped like QUIC (its row in
//! `capability.rs`). A Connection is one WebTransport stream (a byte
//! stream: Messages need a framer); the WebTransport session is the
//! Connection Group, so Clone opens a new bidirectional stream on the same
//! session; Messages with msgReliable false go as session datagrams, which
//! the session's first stream receives. `direction` unidirectional-send opens
//! a unidirectional stream (a receive-only stream is the peer's to open).
//!
//! - **Bindings**: the few WebTransport calls used are bound by hand below
//!   (web-sys has them only behind `--cfg=web_sys_unstable_apis`, which a
//!   library cannot set for its users); streams use the stable web-sys
//!   ReadableStream / WritableStream readers and writers.
//! - **Security**: TLS 1.3 always. Pinned server certificates
//!   (`SecurityParameters::pinned_server_certificate`, SHA-256 of the DER
//!   certificate) become `serverCertificateHashes`; without pins the browser
//!   checks the server with WebPKI as for any https URL.
//! - **URL**: `https://HOST:PORT/PATH`, PATH the protocol option `wt.path`
//!   (default `/`); see [`url`].
//! - **Backpressure**: a write first awaits the writer's `ready`, then the
//!   write itself.
//! - **Close and drop**: Close finishes the stream (its writer's `close()`)
//!   and waits until the browser has committed its data. Dropping the last
//!   handle of a stream closes its writer too, and cancels its reader.
//!   Dropping the last stream of a session closes the session once the
//!   writers' `close()` settled (at most `CLOSE_TIMEOUT`): closing it at
//!   once would discard what the browser still holds. A session with no
//!   finishing stream (a losing racing attempt, an aborted Connection)
//!   closes at once.
//! - **Threads**: the browser objects stay in tables of the page's thread;
//!   the handle is `Send + Sync`, and used from another thread it reports an
//!   error.
//! - **Errors**: browsers do not tell a page why a WebTransport handshake
//!   failed (unreachable, refused, or a certificate that is not trusted or
//!   matches none of `serverCertificateHashes` all read "Opening handshake
//!   failed"); the error names these causes.

use crate::backend::{Recv, SocketOptions};
use crate::properties::Direction;
use crate::racing::Target;
use futures::future::Either;
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    ReadableStream, ReadableStreamDefaultReader, WritableStream, WritableStreamDefaultWriter,
};

#[wasm_bindgen]
extern "C" {
    /// `WebTransport` (W3C WebTransport).
    #[wasm_bindgen(js_name = WebTransport)]
    type JsWebTransport;
    #[wasm_bindgen(constructor, js_class = "WebTransport", catch)]
    fn new(url: &str, options: &JsValue) -> Result<JsWebTransport, JsValue>;
    #[wasm_bindgen(method, getter)]
    fn ready(this: &JsWebTransport) -> js_sys::Promise;
    #[wasm_bindgen(method, getter)]
    fn closed(this: &JsWebTransport) -> js_sys::Promise;
    #[wasm_bindgen(method, getter)]
    fn datagrams(this: &JsWebTransport) -> JsDatagrams;
    #[wasm_bindgen(method, js_name = createBidirectionalStream)]
    fn create_bidirectional_stream(this: &JsWebTransport) -> js_sys::Promise;
    #[wasm_bindgen(method, js_name = createUnidirectionalStream)]
    fn create_unidirectional_stream(this: &JsWebTransport) -> js_sys::Promise;
    #[wasm_bindgen(method, catch)]
    fn close(this: &JsWebTransport) -> Result<(), JsValue>;

    /// `WebTransportDatagramDuplexStream`.
    type JsDatagrams;
    #[wasm_bindgen(method, getter)]
    fn readable(this: &JsDatagrams) -> ReadableStream;
    #[wasm_bindgen(method, getter)]
    fn writable(this: &JsDatagrams) -> WritableStream;
    #[wasm_bindgen(method, getter, js_name = maxDatagramSize)]
    fn max_datagram_size(this: &JsDatagrams) -> JsValue;

    /// `WebTransportBidirectionalStream`.
    type JsBidiStream;
    #[wasm_bindgen(method, getter, js_name = readable)]
    fn bidi_readable(this: &JsBidiStream) -> ReadableStream;
    #[wasm_bindgen(method, getter, js_name = writable)]
    fn bidi_writable(this: &JsBidiStream) -> WritableStream;
}

/// The browser side of a session.
struct SessionEntry {
    wt: JsWebTransport,
    dgram_reader: Option<ReadableStreamDefaultReader>,
    dgram_writer: Option<WritableStreamDefaultWriter>,
    /// A datagram read not yet delivered (kept across reads: its value must
    /// not be lost). One future, shared by the reads that wait on it: a
    /// future made anew per read would attach callbacks to the pending
    /// Promise each time, kept until a datagram comes.
    pending_dgram: Option<futures::future::Shared<JsFuture>>,
    /// The writers' `close()` of its finished streams (closed by the
    /// Connection, or as its last handle went): the session closes only
    /// once they have settled, so that what they still hold is committed
    /// first (see `SessionInner`'s drop).
    finishing: Vec<js_sys::Promise>,
}

/// The browser side of a stream.
struct StreamEntry {
    reader: Option<ReadableStreamDefaultReader>,
    writer: Option<WritableStreamDefaultWriter>,
    /// A stream read not yet delivered (kept across reads).
    pending_read: Option<js_sys::Promise>,
    /// The writer's `close()`, once the stream was finished: it resolves
    /// once the stream's data is all committed (the W3C spec's "all data
    /// committed" state), and `delivered` waits for it.
    closing: Option<js_sys::Promise>,
    /// Something was written to it: a stream never used (a racing loser
    /// that connected) is not finished and waited for as it goes.
    used: bool,
}

thread_local! {
    static SESSIONS: RefCell<super::IdMap<u64, SessionEntry>> = RefCell::default();
    static STREAMS: RefCell<super::IdMap<u64, StreamEntry>> = RefCell::default();
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Note that the session `session` has a stream whose writer is closing
/// (`closing`, its `close()`): the session closes once it settled.
fn finishing(session: u64, closing: js_sys::Promise) {
    SESSIONS.with(|t| {
        if let Some(s) = t.borrow_mut().get_mut(&session) {
            // A long session with many streams: fold the list into one
            // promise now and then, so it does not grow with every stream.
            if s.finishing.len() >= 32 {
                let all: js_sys::Array = s.finishing.drain(..).collect();
                s.finishing.push(js_sys::Promise::all_settled(&all));
            }
            s.finishing.push(closing);
        }
    });
}

/// Close the session `wt` once `finishing` settled (at most
/// [`CLOSE_TIMEOUT`](crate::CLOSE_TIMEOUT) later), or at once if nothing
/// is finishing.
fn close_when_settled(wt: JsWebTransport, finishing: &[js_sys::Promise]) {
    if finishing.is_empty() {
        let _ = wt.close();
        return;
    }
    let all: js_sys::Array = finishing.iter().collect();
    let settled = JsFuture::from(js_sys::Promise::all_settled(&all));
    crate::runtime::spawn(async move {
        let limit = crate::runtime::sleep(crate::CLOSE_TIMEOUT);
        futures::pin_mut!(limit);
        let _ = futures::future::select(settled, limit).await;
        let _ = wt.close();
    });
}

/// A promise whose rejection nobody awaits: consumed quietly.
fn quietly(p: js_sys::Promise) {
    wasm_bindgen_futures::spawn_local(async move {
        let _ = JsFuture::from(p).await;
    });
}

struct SessionInner {
    id: u64,
    url: String,
    /// The peer's address, when the attempt had one (a host name goes to the browser as it is).
    remote: Option<SocketAddr>,
}

impl Drop for SessionInner {
    /// Close the session: at once if no stream of it was finishing (a
    /// losing racing attempt, an aborted Connection), else once their
    /// writers' `close()` settled (at most [`CLOSE_TIMEOUT`] later): closing
    /// the session discards what the browser still holds for its streams.
    ///
    /// [`CLOSE_TIMEOUT`]: crate::CLOSE_TIMEOUT
    fn drop(&mut self) {
        if let Some(s) = SESSIONS.with(|t| t.borrow_mut().remove(&self.id)) {
            close_when_settled(s.wt, &s.finishing);
        }
    }
}

struct StreamInner {
    id: u64,
    /// Its session, kept while the stream lives: the stream's drop (which
    /// registers its finishing writer there) runs before the session's.
    session: Arc<SessionInner>,
    /// Reads take turns.
    read_turn: futures::lock::Mutex<()>,
    /// Writes take turns.
    write_turn: futures::lock::Mutex<()>,
    /// Set by abort: the error every later read and write returns.
    aborted: Mutex<bool>,
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        if let Some(s) = STREAMS.with(|t| t.borrow_mut().remove(&self.id)) {
            let aborted = *self.aborted.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = s.writer {
                match s.closing {
                    // Finished already (Close, or a final Message).
                    Some(closing) if !aborted => finishing(self.session.id, closing),
                    Some(_) => {}
                    // Finished as the last handle goes; the session waits
                    // for it if anything was written.
                    None => {
                        let closing = w.close();
                        quietly(closing.clone());
                        if s.used && !aborted {
                            finishing(self.session.id, closing);
                        }
                    }
                }
            }
            if let Some(r) = s.reader {
                quietly(r.cancel());
            }
        }
    }
}

/// One WebTransport stream, with its session (`stream.session`). Clones
/// share both.
#[derive(Clone)]
pub(crate) struct WtTransport {
    stream: Arc<StreamInner>,
    takes_datagrams: bool,
    can_send: bool,
    can_receive: bool,
}

impl fmt::Debug for WtTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WtTransport")
            .field("url", &self.stream.session.url)
            .field("stream", &self.stream.id)
            .finish()
    }
}

/// The URL of a session with `host` (a host name, or an IP address: IPv6 gets
/// brackets) and `port`: `https://HOST:PORT/PATH`, PATH the protocol option
/// `wt.path` (default `/`).
pub(crate) fn url(host: &str, port: u16, opts: &SocketOptions) -> String {
    let host = match host.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => format!("[{ip}]"),
        Err(_) => host.to_string(),
    };
    let path = opts
        .protocol_options
        .get("wt.path")
        .cloned()
        .unwrap_or_else(|| "/".to_string());
    format!("https://{host}:{port}{path}")
}

/// A JavaScript exception as text (never keep a JsValue in an error).
fn js_text(v: &JsValue) -> String {
    if let Some(e) = v.dyn_ref::<js_sys::Error>() {
        return String::from(e.to_string());
    }
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

/// The `WebTransportOptions` for `opts`: pins as `serverCertificateHashes`.
fn options(opts: &SocketOptions) -> Result<JsValue, JsValue> {
    let o = js_sys::Object::new();
    let pins = opts
        .security
        .as_ref()
        .map(|s| s.pinned_server_certificate.clone())
        .unwrap_or_default();
    if !pins.is_empty() {
        let hashes = js_sys::Array::new();
        for pin in &pins {
            let h = js_sys::Object::new();
            js_sys::Reflect::set(&h, &"algorithm".into(), &"sha-256".into())?;
            let value = js_sys::Uint8Array::from(&pin[..]);
            js_sys::Reflect::set(&h, &"value".into(), &value)?;
            hashes.push(&h);
        }
        js_sys::Reflect::set(&o, &"serverCertificateHashes".into(), &hashes)?;
    }
    Ok(o.into())
}

/// `{ value, done }` of a reader's read.
fn read_result(v: &JsValue) -> Result<Option<js_sys::Uint8Array>, JsValue> {
    let done = js_sys::Reflect::get(v, &"done".into())?
        .as_bool()
        .unwrap_or(false);
    if done {
        return Ok(None);
    }
    let value = js_sys::Reflect::get(v, &"value".into())?;
    Ok(Some(value.unchecked_into()))
}

impl WtTransport {
    /// Open a session to `remote` and its first stream; resolves once the
    /// session is ready (TLS 1.3 and the HTTP/3 CONNECT done) and the stream open.
    pub(crate) async fn connect(remote: &Target, opts: &SocketOptions) -> io::Result<Self> {
        let host = opts
            .server_name
            .clone()
            .unwrap_or_else(|| remote.host_text());
        let url = url(&host, remote.port(), opts);
        let pinned = opts
            .security
            .as_ref()
            .is_some_and(|s| !s.pinned_server_certificate.is_empty());
        let options = options(opts).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WebTransport options for {url}: {}", js_text(&e)),
            )
        })?;
        let wt = JsWebTransport::new(&url, &options).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the browser refused to open WebTransport {url}: {}",
                    js_text(&e)
                ),
            )
        })?;
        let ready = wt.ready();
        quietly(wt.closed());
        let id = next_id();
        SESSIONS.with(|t| {
            t.borrow_mut().insert(
                id,
                SessionEntry {
                    wt,
                    dgram_reader: None,
                    dgram_writer: None,
                    pending_dgram: None,
                    finishing: Vec::new(),
                },
            )
        });
        // From here on, dropping `session` (a cancelled attempt) closes it.
        let session = Arc::new(SessionInner {
            id,
            url,
            remote: remote.addr(),
        });
        if let Err(e) = JsFuture::from(ready).await {
            let cert = if pinned {
                "a server certificate whose SHA-256 matches none of the pinned certificates (serverCertificateHashes)"
            } else {
                "a server certificate the browser does not trust (WebPKI)"
            };
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!(
                    "the WebTransport handshake with {} failed ({}); browsers do not tell a page \
                     why: the server is unreachable or refused, or it presented {cert}",
                    session.url,
                    js_text(&e)
                ),
            ));
        }
        Self::open(session, opts.direction, true).await
    }

    /// Open a stream on `session` for `direction`.
    async fn open(
        session: Arc<SessionInner>,
        direction: Direction,
        takes_datagrams: bool,
    ) -> io::Result<Self> {
        let url = session.url.clone();
        let fail = |what: &str, e: JsValue| {
            io::Error::other(format!(
                "opening a {what} WebTransport stream on {url}: {}",
                js_text(&e)
            ))
        };
        let promise = with_session(&session, |s| {
            match direction {
            Direction::Bidirectional => Ok(s.wt.create_bidirectional_stream()),
            Direction::UnidirectionalSend => Ok(s.wt.create_unidirectional_stream()),
            Direction::UnidirectionalReceive => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a receive-only WebTransport stream is opened by the peer; Initiate cannot open one",
            )),
        }
        })??;
        let entry = match direction {
            Direction::Bidirectional => {
                let bidi: JsBidiStream = JsFuture::from(promise)
                    .await
                    .map_err(|e| fail("bidirectional", e))?
                    .unchecked_into();
                let reader: ReadableStreamDefaultReader =
                    bidi.bidi_readable().get_reader().unchecked_into();
                let writer = bidi
                    .bidi_writable()
                    .get_writer()
                    .map_err(|e| fail("bidirectional", e))?;
                StreamEntry {
                    reader: Some(reader),
                    writer: Some(writer),
                    pending_read: None,
                    closing: None,
                    used: false,
                }
            }
            _ => {
                let w: WritableStream = JsFuture::from(promise)
                    .await
                    .map_err(|e| fail("unidirectional", e))?
                    .unchecked_into();
                StreamEntry {
                    reader: None,
                    writer: Some(w.get_writer().map_err(|e| fail("unidirectional", e))?),
                    pending_read: None,
                    closing: None,
                    used: false,
                }
            }
        };
        let can_receive = entry.reader.is_some();
        let id = next_id();
        STREAMS.with(|t| t.borrow_mut().insert(id, entry));
        Ok(WtTransport {
            stream: Arc::new(StreamInner {
                id,
                session,
                read_turn: futures::lock::Mutex::new(()),
                write_turn: futures::lock::Mutex::new(()),
                aborted: Mutex::new(false),
            }),
            takes_datagrams,
            can_send: true,
            can_receive,
        })
    }

    /// Clone: a new stream on the same session, in the same direction.
    pub(crate) async fn open_sibling(&self) -> io::Result<Self> {
        let direction = if self.can_receive {
            Direction::Bidirectional
        } else {
            Direction::UnidirectionalSend
        };
        Self::open(self.stream.session.clone(), direction, false).await
    }

    pub(crate) fn can_send(&self) -> bool {
        self.can_send
    }

    pub(crate) fn can_receive(&self) -> bool {
        self.can_receive
    }

    pub(crate) fn remote(&self) -> Option<SocketAddr> {
        self.stream.session.remote
    }

    fn aborted(&self) -> io::Result<()> {
        if *self
            .stream
            .aborted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
        {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!(
                    "the WebTransport stream on {} was aborted",
                    self.stream.session.url
                ),
            ));
        }
        Ok(())
    }

    fn with_stream<R>(&self, f: impl FnOnce(&mut StreamEntry) -> R) -> io::Result<R> {
        STREAMS
            .with(|t| t.borrow_mut().get_mut(&self.stream.id).map(f))
            .ok_or_else(|| wrong_thread(&self.stream.session.url))
    }

    /// Append stream bytes, or return one datagram (first stream only).
    /// Cancel safe: a read the browser has begun is kept for the next call.
    pub(crate) async fn read(&self, buf: &mut bytes::BytesMut) -> io::Result<Recv> {
        self.aborted()?;
        let _turn = self.stream.read_turn.lock().await;
        let stream_read = self.with_stream(|s| {
            let reader = s.reader.as_ref()?;
            Some(s.pending_read.get_or_insert_with(|| reader.read()).clone())
        })?;
        let Some(stream_read) = stream_read else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this WebTransport stream is send-only",
            ));
        };
        let url = &self.stream.session.url;
        let stream_err = |e: JsValue| {
            io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("reading the WebTransport stream on {url}: {}", js_text(&e)),
            )
        };
        let result = if self.takes_datagrams {
            let dgram = with_session(&self.stream.session, |s| {
                if s.dgram_reader.is_none() {
                    s.dgram_reader =
                        Some(s.wt.datagrams().readable().get_reader().unchecked_into());
                }
                let reader = s.dgram_reader.as_ref().expect("set above");
                s.pending_dgram
                    .get_or_insert_with(|| {
                        use futures::FutureExt as _;
                        JsFuture::from(reader.read()).shared()
                    })
                    .clone()
            })?;
            match futures::future::select(JsFuture::from(stream_read), dgram).await {
                Either::Left((r, _)) => r,
                Either::Right((d, _)) => {
                    with_session(&self.stream.session, |s| s.pending_dgram = None)?;
                    let d = d.and_then(|v| read_result(&v)).map_err(|e| {
                        io::Error::other(format!(
                            "reading WebTransport datagrams on {url}: {}",
                            js_text(&e)
                        ))
                    })?;
                    return match d {
                        Some(d) => Ok(Recv::Datagram(super::received_bytes::received(d))),
                        None => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the WebTransport session {url} ended"),
                        )),
                    };
                }
            }
        } else {
            JsFuture::from(stream_read).await
        };
        self.with_stream(|s| s.pending_read = None)?;
        self.aborted()?;
        match result.and_then(|v| read_result(&v)).map_err(stream_err)? {
            Some(chunk) => {
                let at = buf.len();
                buf.resize(at + chunk.length() as usize, 0);
                chunk.copy_to(&mut buf[at..]);
                Ok(Recv::Bytes)
            }
            None => Ok(Recv::Eof),
        }
    }

    /// Write all of `bufs` (as one chunk), after awaiting the writer's `ready`.
    pub(crate) async fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.write_chunk(Self::chunk(bufs)).await
    }

    /// The bytes of `bufs` in one JS array.
    fn chunk(bufs: &[io::IoSlice<'_>]) -> js_sys::Uint8Array {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let chunk = js_sys::Uint8Array::new_with_length(len as u32);
        let mut at = 0u32;
        for b in bufs {
            chunk.subarray(at, at + b.len() as u32).copy_from(b);
            at += b.len() as u32;
        }
        chunk
    }

    /// A write that owns its bytes (see `Transport::start_write`).
    pub(crate) fn start_write(
        &self,
        bufs: &[io::IoSlice<'_>],
    ) -> crate::runtime::BoxFuture<'static, io::Result<usize>> {
        let chunk = Self::chunk(bufs);
        let t = self.clone();
        Box::pin(async move { t.write_chunk(chunk).await })
    }

    async fn write_chunk(&self, chunk: js_sys::Uint8Array) -> io::Result<usize> {
        self.aborted()?;
        let _turn = self.stream.write_turn.lock().await;
        let len = chunk.length() as usize;
        let writer = self
            .with_stream(|s| {
                s.used = true;
                s.writer.clone()
            })?
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this WebTransport stream is receive-only",
                )
            })?;
        write(&writer, &chunk, "stream", &self.stream.session.url).await?;
        Ok(len)
    }

    /// Send one datagram on the session, after awaiting the writer's `ready`.
    pub(crate) async fn send_datagram(&self, data: &[u8]) -> io::Result<()> {
        let writer = with_session(&self.stream.session, |s| {
            if s.dgram_writer.is_none() {
                s.dgram_writer = s.wt.datagrams().writable().get_writer().ok();
            }
            s.dgram_writer.clone()
        })?
        .ok_or_else(|| {
            io::Error::other(format!(
                "the datagrams of WebTransport {} cannot be written",
                self.stream.session.url
            ))
        })?;
        let chunk = js_sys::Uint8Array::from(data);
        write(&writer, &chunk, "datagram", &self.stream.session.url).await
    }

    /// Finish the stream (close its writer: FIN).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.with_stream(|s| {
            // Once: a Message marked final finished it already, and a
            // second `close()` would only reject (and replace the promise
            // `delivered` waits for).
            if s.closing.is_some() {
                return;
            }
            if let Some(w) = &s.writer {
                s.used = true;
                let closing = w.close();
                // Consumed even if nobody waits in `delivered`.
                quietly(closing.clone());
                s.closing = Some(closing);
            }
        })
    }

    /// After `shutdown_write`: wait until the browser says the stream's
    /// data is all committed (its writer's `close()` resolved). Closing the
    /// session before that discards what the browser still holds: a 4 MiB
    /// Message reported Sent was lost whole that way on a busy machine
    /// (`wt_close_right_after_a_large_message_loses_nothing`).
    pub(crate) async fn delivered(&self) -> io::Result<()> {
        let Some(closing) = self.with_stream(|s| s.closing.clone())? else {
            return Ok(());
        };
        JsFuture::from(closing).await.map(|_| ()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!(
                    "finishing the WebTransport stream on {}: {}",
                    self.stream.session.url,
                    js_text(&e)
                ),
            )
        })
    }

    /// Reset the stream: abort the writer, cancel the reader (which ends a
    /// pending read), and fail later reads and writes.
    pub(crate) fn abort(&self) {
        *self
            .stream
            .aborted
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        let _ = self.with_stream(|s| {
            if let Some(w) = &s.writer {
                quietly(w.abort());
            }
            if let Some(r) = &s.reader {
                quietly(r.cancel());
            }
        });
    }

    /// CloseGroup / AbortGroup (`abort`): close the session; CloseGroup
    /// once the streams finishing on it settled (those dropped without
    /// Close too), AbortGroup at once.
    pub(crate) fn close_session(&self, abort: bool) {
        let _ = with_session(&self.stream.session, |s| {
            if abort {
                let _ = s.wt.close();
            } else {
                close_when_settled(s.wt.clone().unchecked_into(), &s.finishing);
            }
        });
    }

    /// `datagrams.maxDatagramSize`, if the browser says.
    pub(crate) fn max_datagram(&self) -> Option<u64> {
        with_session(&self.stream.session, |s| {
            s.wt.datagrams()
                .max_datagram_size()
                .as_f64()
                .filter(|n| *n > 0.0)
                .map(|n| n as u64)
        })
        .ok()
        .flatten()
    }
}

fn wrong_thread(url: &str) -> io::Error {
    io::Error::other(format!(
        "the WebTransport session {url} belongs to another thread (browser objects stay on their thread)"
    ))
}

fn with_session<R>(s: &SessionInner, f: impl FnOnce(&mut SessionEntry) -> R) -> io::Result<R> {
    SESSIONS
        .with(|t| t.borrow_mut().get_mut(&s.id).map(f))
        .ok_or_else(|| wrong_thread(&s.url))
}

/// Backpressure: await `ready`, then the write.
async fn write(
    writer: &WritableStreamDefaultWriter,
    chunk: &js_sys::Uint8Array,
    what: &str,
    url: &str,
) -> io::Result<()> {
    let fail = |e: JsValue| {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("writing a WebTransport {what} on {url}: {}", js_text(&e)),
        )
    };
    JsFuture::from(writer.ready()).await.map_err(fail)?;
    JsFuture::from(writer.write_with_chunk(chunk))
        .await
        .map_err(fail)?;
    Ok(())
}
