//! Termination (RFC 9622 §10): Close, Abort, the stop that ends pending
//! receives and sends, failures underneath, and the events that report them.

#![allow(clippy::result_large_err)]

use super::*;
use crate::backend::StackInstance;

/// How long [`Connection::close`] waits for the peer to take what was sent
/// (the queued Messages written, and where the stack can tell, acknowledged:
/// a QUIC stream's data; a TCP or TLS peer's end of stream read, so that no
/// reset discards the tail). Past it, close aborts the Connection and
/// reports a Timeout instead of waiting forever on a peer that stopped
/// reading.
pub const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long [`Connection::close`] keeps reading a TCP or TLS peer's side,
/// after finishing its own, for the peer's end of stream: closing a socket
/// with unread bytes resets the connection, and a reset can discard what
/// the peer has not read yet. A peer that keeps its side open longer sees
/// the socket close then.
pub const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

impl Connection {
    /// The next unsolicited event (Closed, ConnectionError, SoftError,
    /// PathChange, CloneError); `None` after the last one.
    pub async fn next_event(&self) -> Option<ConnectionEvent> {
        self.inner.next_event().await
    }

    /// The unsolicited events as a `Stream` (every
    /// [`next_event`](Self::next_event)), ending after the last one.
    pub fn events(&self) -> impl futures::Stream<Item = ConnectionEvent> + '_ {
        futures::stream::unfold((), move |()| async move {
            self.next_event().await.map(|event| (event, ()))
        })
    }

    /// `Close()` (§10): send every queued Message, finish the stream (TCP
    /// FIN), and wait until the peer has what was sent where the stack can
    /// tell (QUIC and native WebTransport: the stream's data acknowledged;
    /// WebRTC: the channel closed after its data, natively once SCTP
    /// acknowledged it; TCP and TLS: the peer's
    /// end of stream read, for at most [`CLOSE_LINGER`], so that no reset
    /// discards the tail); then resolve pending receives and emit `Closed`.
    /// Idempotent. It never waits forever: past [`CLOSE_TIMEOUT`] it aborts
    /// the Connection and fails with `Timeout`, and an `abort()` meanwhile
    /// ends it at once (every unanswered send fails with SendError).
    pub async fn close(&self) -> Result<(), Error> {
        Inner::close(&self.inner).await
    }

    /// `Abort()` (§10): stop at once (TCP RST). Queued Messages fail with
    /// SendError, pending receives with ReceiveError, and the event stream
    /// gets `ConnectionError` ("local Abort").
    pub fn abort(&self) {
        self.inner
            .abort(Error::new(ErrorReason::ConnectionAborted, "local Abort"));
    }
}

/// Why a Connection's receives ended (`Inner::stopped`).
pub(super) enum Stopped {
    /// `Close()`.
    Closed,
    /// `Abort()`.
    Aborted,
    /// The stack failed underneath, with this error (boxed: every
    /// Connection holds a `Stopped` place, and few ever fail).
    Failed(Box<Error>),
}

/// How [`Inner::until`] ended.
pub(super) enum Until {
    /// The work is done.
    Done,
    /// The Connection stopped first (Abort, or a failure).
    Stopped,
    /// The deadline passed first.
    Deadline,
}

/// While a Close waits for the stack's word on delivery; on drop (done, or
/// the Close given up) the other Closes waiting for it are woken.
struct Delivering<'a>(&'a Inner);

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.0.status.lock().unwrap().delivering = false;
        self.0.wake_waiters();
    }
}

impl Inner {
    /// Poll `work` until it is done, or (with `watch_stop`) the Connection
    /// stops, or `deadline` passes, whichever comes first. Every such wait
    /// of the Connection (Close's, and the task that finishes what a dropped
    /// send left) goes through this one function.
    pub(super) async fn until(
        &self,
        mut work: std::pin::Pin<&mut runtime::DynFuture<'_>>,
        watch_stop: bool,
        deadline: Option<Instant>,
    ) -> Until {
        use std::task::Poll;
        let mut stop = self.stop_wait();
        let mut timer = deadline.map(|d| Box::pin(runtime::sleep_until(d)));
        std::future::poll_fn(|cx| {
            if work.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Until::Done);
            }
            if watch_stop && std::pin::Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(Until::Stopped);
            }
            if let Some(t) = timer.as_mut() {
                if t.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Until::Deadline);
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Stop: every pending and later receive ends (with [`Self::stopped_error`],
    /// which says `why`), and a send waiting for the writer stops waiting.
    /// The first reason given stays.
    pub(super) fn stop(&self, why: Stopped) {
        let _ = self.stopped.set(why);
        self.wake_stop_waiters();
        self.recv_stop.wake();
    }

    pub(super) fn stopped_error(&self) -> ReceiveError {
        let why = match self.stopped.get() {
            Some(Stopped::Failed(e)) => format!("the Connection failed: {}", e.message),
            Some(Stopped::Aborted) => "the Connection was aborted".to_string(),
            Some(Stopped::Closed) | None => "the Connection was closed locally".to_string(),
        };
        ReceiveError {
            context: None,
            error: Error::new(ErrorReason::ConnectionAborted, why),
        }
    }

    /// The stack failed underneath: nothing more can be sent or received.
    pub(super) fn fail(&self, err: Error) {
        let first = {
            let mut st = self.status.lock().unwrap();
            let first = st.state != ConnState::Closed;
            st.state = ConnState::Closed;
            self.can_receive.store(false, Ordering::Release);
            first
        };
        self.send_q.lock().unwrap().shut(err.clone(), &err);
        if first {
            self.stop(Stopped::Failed(Box::new(err.clone())));
            self.emit(ConnectionEvent::ConnectionError(err));
        }
    }

    /// Close ran out of time ([`CLOSE_TIMEOUT`]): abort, and the error that
    /// says so (every Message still unanswered fails with it).
    pub(super) fn close_timed_out(&self) -> Error {
        let err = Error::new(
            ErrorReason::Timeout,
            format!(
                "close: the peer did not take what was sent within {} s; the Connection was aborted",
                CLOSE_TIMEOUT.as_secs()
            ),
        );
        self.abort(err.clone());
        self.answer_writes_after_stop();
        err
    }

    /// After the stop: if the writer is free (no flush holds it any more),
    /// answer every Message it still holds with the reason of the stop, and
    /// let go of the stack. A writer still held is answered by its holder,
    /// which sees the stop too.
    pub(super) fn answer_writes_after_stop(&self) {
        let Some(mut w) = self.writer.try_lock() else {
            return;
        };
        let err = self.stop_error().unwrap_or_else(|| {
            Error::new(ErrorReason::ConnectionAborted, "the Connection is closed")
        });
        w.fail(&err);
        w.transport = None;
    }

    /// Why the Connection stopped, as the error its unanswered sends get
    /// (`None` while it runs).
    pub(super) fn stop_error(&self) -> Option<Error> {
        Some(match self.stopped.get()? {
            Stopped::Failed(e) => Error::clone(e),
            Stopped::Aborted => Error::new(ErrorReason::ConnectionAborted, "local Abort"),
            Stopped::Closed => {
                Error::new(ErrorReason::ConnectionAborted, "the Connection is closed")
            }
        })
    }

    pub(super) fn abort(&self, err: Error) {
        {
            let mut st = self.status.lock().unwrap();
            if st.state == ConnState::Closed {
                return;
            }
            st.state = ConnState::Closed;
            self.can_receive.store(false, Ordering::Release);
        }
        self.send_q.lock().unwrap().abort(&err);
        self.local_addr();
        if let Some(t) = self.abort_handle.lock().unwrap().take() {
            t.abort();
        }
        self.stop(Stopped::Aborted);
        // In-flight Messages are answered by whoever holds the writer; take it
        // if free. Dropping the last handle of the socket closes it, and with
        // linger 0 that close is a reset.
        if let Some(mut w) = self.writer.try_lock() {
            w.fail(&err);
            w.transport = None;
        }
        if let Some(mut r) = self.recv.try_lock() {
            r.transport = None;
            r.done.get_or_insert_with(|| Box::new(err.clone()));
        }
        self.emit(ConnectionEvent::ConnectionError(err));
    }

    pub(super) async fn close(inner: &Arc<Inner>) -> Result<(), Error> {
        {
            let mut st = inner.status.lock().unwrap();
            match st.state {
                ConnState::Closed => return Ok(()),
                ConnState::Closing => {}
                _ => st.state = ConnState::Closing,
            }
        }
        {
            let mut q = inner.send_q.lock().unwrap();
            if let Some(batch) = q.batch.take() {
                let _ = batch.0.send(());
            }
            // A Message whose last part never came cannot go out.
            q.shut(
                Error::new(ErrorReason::ConnectionAborted, "the Connection is closing"),
                &Error::new(
                    ErrorReason::InvalidMessageProperties,
                    "the Connection closed before the last part of this Message (end_of_message true) was sent",
                ),
            );
        }
        // Deliver everything queued, finish the stream, and wait until the
        // peer has it where the stack can tell (a QUIC stream's data
        // acknowledged), unless an Abort (or a failure) stops the Connection
        // meanwhile: then the writer, and the sends it holds, are answered at
        // once. All of it within CLOSE_TIMEOUT.
        let deadline = runtime::saturating_add(runtime::now(), CLOSE_TIMEOUT);
        let mut finish = Box::pin(async {
            Inner::lock_and_flush(inner).await;
            // Nothing more can be queued (the queue is shut): finish the stream.
            let t = {
                let mut w = inner.writer.lock().await;
                let t = w.transport.take();
                if t.is_some() {
                    inner.status.lock().unwrap().delivering = true;
                }
                t
            };
            if let Some(t) = t {
                let _delivering = Delivering(inner);
                if t.shutdown_write().is_ok() {
                    // The stack's word on delivery (QUIC: acknowledged, or
                    // the peer ended the stream its own way).
                    let _ = t.delivered().await;
                }
            } else {
                // Another Close finished the stream and waits for the word
                // on delivery: this one waits for it too, rather than stop
                // the Connection under it (which would end that wait, and
                // let the last handle go before the peer had everything).
                let mut key = None;
                std::future::poll_fn(|cx| {
                    inner.register_waiter(&mut key, cx.waker());
                    if inner.status.lock().unwrap().delivering {
                        std::task::Poll::Pending
                    } else {
                        std::task::Poll::Ready(())
                    }
                })
                .await;
                inner.remove_waiter(key);
            }
        });
        let ended = inner.until(finish.as_mut(), true, Some(deadline)).await;
        drop(finish);
        match ended {
            Until::Done => {}
            Until::Stopped => inner.answer_writes_after_stop(),
            Until::Deadline => return Err(inner.close_timed_out()),
        }
        // Resolve pending receives before Closed: the stop ends them, and
        // the one holding the receive side lets go of it (unless its future
        // is kept and never polled again: then, after CLOSE_LINGER, the
        // Connection closes without it).
        inner.stop(Stopped::Closed);
        let bound = || {
            let linger = runtime::saturating_add(runtime::now(), CLOSE_LINGER);
            if linger < deadline {
                linger
            } else {
                deadline
            }
        };
        let mut reader = None;
        let mut take_reader = Box::pin(async {
            reader = inner.recv.lock().await.transport.take();
        });
        let receives_by = bound();
        inner
            .until(take_reader.as_mut(), false, Some(receives_by))
            .await;
        drop(take_reader);
        // TCP and TLS: read the peer's side to its end (and drop what
        // arrives), so that closing the socket with unread data does not
        // reset the connection and discard the tail of what we sent. A peer
        // that keeps its side open gets CLOSE_LINGER for that, then the
        // socket closes anyway.
        if let Some(t) = reader.filter(|_| matches!(ended, Until::Done)) {
            let mut drain = Box::pin(async move {
                let _ = t.drain_to_end().await;
            });
            inner.until(drain.as_mut(), false, Some(bound())).await;
        }
        let mut key = None;
        let mut receives_ended = Box::pin(std::future::poll_fn(|cx| {
            // Before the registration and the count (see `ReceiveGuard`).
            inner.close_waits.store(true, Ordering::SeqCst);
            inner.register_waiter(&mut key, cx.waker());
            if inner.receives.load(Ordering::SeqCst) == 0 {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        }));
        inner
            .until(receives_ended.as_mut(), false, Some(receives_by))
            .await;
        drop(receives_ended);
        inner.remove_waiter(key);
        inner.local_addr();
        inner.abort_handle.lock().unwrap().take();
        {
            let mut s = inner.status.lock().unwrap();
            if s.state == ConnState::Closed {
                return Ok(()); // aborted meanwhile: ConnectionError was the last event
            }
            s.state = ConnState::Closed;
            inner.can_receive.store(false, Ordering::Release);
        }
        inner.emit(ConnectionEvent::Closed);
        Ok(())
    }
}
