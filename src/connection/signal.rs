//! The Connection's own signals, kept in its `Inner` rather than in channels
//! of their own (an idle Connection then holds no allocation for them): the
//! stop that ends waiting receives, sends and Close, and the queue of
//! unsolicited events.

use super::*;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// The wakers of the futures waiting for a signal, each under a key its
/// future keeps, to replace its waker when polled again and take it out when
/// dropped (so that the list holds only futures still waiting). Empty, it
/// holds no allocation.
#[derive(Default)]
pub(super) struct Waiters {
    list: Vec<(usize, Waker)>,
    next: usize,
}

impl Waiters {
    /// Register `waker` under `key` (given one on the first call).
    pub(super) fn register(&mut self, key: &mut Option<usize>, waker: &Waker) {
        if let Some(k) = *key {
            if let Some((_, w)) = self.list.iter_mut().find(|(kk, _)| *kk == k) {
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                return;
            }
        }
        let k = self.next;
        self.next = self.next.wrapping_add(1);
        self.list.push((k, waker.clone()));
        *key = Some(k);
    }

    /// Take out the waker under `key`, if there is one.
    pub(super) fn remove(&mut self, key: Option<usize>) {
        if let Some(k) = key {
            if let Some(i) = self.list.iter().position(|(kk, _)| *kk == k) {
                self.list.swap_remove(i);
            }
        }
    }

    /// Wake every waiter (each registers again if it still waits).
    pub(super) fn wake_all(&mut self) {
        for (_, w) in std::mem::take(&mut self.list) {
            w.wake();
        }
    }
}

/// Resolves once the Connection stopped (`Inner::stop`: Close, Abort, or a
/// failure underneath).
pub(super) struct StopWait<'a> {
    inner: &'a Inner,
    key: Option<usize>,
}

impl Inner {
    /// A future that resolves once the Connection stopped.
    pub(super) fn stop_wait(&self) -> StopWait<'_> {
        StopWait {
            inner: self,
            key: None,
        }
    }

    /// Wake every future waiting for the stop (after `stopped` is set).
    /// (Those waiting for an event, or Close for the receives to end, too:
    /// one list serves all, and each signal is rare.)
    pub(super) fn wake_stop_waiters(&self) {
        self.wake_waiters();
    }

    /// Wake every future in the waiter list.
    pub(super) fn wake_waiters(&self) {
        self.events.lock().unwrap().waiters.wake_all();
    }

    /// Put `waker` in the waiter list under `key` (see [`Waiters::register`]).
    pub(super) fn register_waiter(&self, key: &mut Option<usize>, waker: &Waker) {
        self.events.lock().unwrap().waiters.register(key, waker);
    }

    /// Take the waker under `key` out of the waiter list.
    pub(super) fn remove_waiter(&self, key: Option<usize>) {
        if key.is_some() {
            self.events.lock().unwrap().waiters.remove(key);
        }
    }

    /// Queue an unsolicited event, unless the last one was queued already;
    /// Closed or ConnectionError is the last.
    pub(super) fn emit(&self, event: ConnectionEvent) {
        let mut ev = self.events.lock().unwrap();
        if ev.queue_event(event) {
            ev.waiters.wake_all();
        }
    }

    /// True once no more events can be queued.
    pub(super) fn events_ended(&self) -> bool {
        self.events.lock().unwrap().ended
    }
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.inner.stopped.get().is_some() {
            return Poll::Ready(());
        }
        let mut ev = this.inner.events.lock().unwrap();
        // `stop` sets `stopped` before it takes the list under this lock:
        // seen here, or this waker is woken.
        if this.inner.stopped.get().is_some() {
            return Poll::Ready(());
        }
        ev.waiters.register(&mut this.key, cx.waker());
        Poll::Pending
    }
}

impl Drop for StopWait<'_> {
    fn drop(&mut self) {
        self.inner.remove_waiter(self.key);
    }
}

/// How many unsolicited events may wait for the application at once. Past
/// it, SoftErrors, PathChanges and CloneErrors are counted instead, and each
/// kind counted is told as one event (with the last one's words) once the
/// waiting ones were taken: a peer that makes SoftErrors on purpose (ICMP
/// reports, dropped datagrams), while the application reads Messages but
/// not events, costs the Connection a count, not a queue without bound.
/// The last event (Closed or ConnectionError) is always queued.
pub(crate) const EVENTS_WAITING_MAX: usize = 64;

/// The unsolicited events not yet taken, and the futures waiting for one
/// or for the stop.
#[derive(Default)]
pub(super) struct Events {
    /// The events waiting, if any (boxed: a Connection gets few events,
    /// most none, and then holds a pointer).
    queue: Option<Box<Queue>>,
    /// The last event was queued (Closed or ConnectionError): none follows.
    ended: bool,
    waiters: Waiters,
}

/// The events waiting for the application, and those counted while
/// [`EVENTS_WAITING_MAX`] waited.
#[derive(Default)]
struct Queue {
    /// (Room for one in place: most Connections get one event, the last.)
    waiting: smallvec::SmallVec<[ConnectionEvent; 1]>,
    untold: Untold,
}

impl Queue {
    /// Queue what was counted, one event per kind.
    fn tell_untold(&mut self) {
        let untold = std::mem::take(&mut self.untold);
        self.waiting.extend(untold.into_events());
    }
}

/// Events counted rather than queued, by kind, with the last one of each.
#[derive(Default)]
struct Untold {
    soft_errors: u64,
    last_soft_error: String,
    path_changes: u64,
    last_path_change: String,
    clone_errors: u64,
    last_clone_error: Option<Error>,
}

impl Untold {
    fn is_empty(&self) -> bool {
        self.soft_errors == 0 && self.path_changes == 0 && self.clone_errors == 0
    }

    fn count(&mut self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::SoftError(s) => {
                self.soft_errors += 1;
                self.last_soft_error = s;
            }
            ConnectionEvent::PathChange(s) => {
                self.path_changes += 1;
                self.last_path_change = s;
            }
            ConnectionEvent::CloneError(e) => {
                self.clone_errors += 1;
                self.last_clone_error = Some(e);
            }
            // The last events are queued, never counted.
            ConnectionEvent::Closed | ConnectionEvent::ConnectionError(_) => {
                debug_assert!(false, "the last event is never counted")
            }
        }
    }

    /// One event per kind counted, saying how many and the last one.
    fn into_events(self) -> impl Iterator<Item = ConnectionEvent> {
        let while_waiting =
            format!("while {EVENTS_WAITING_MAX} events waited for the application to take them");
        let soft = (self.soft_errors > 0).then(|| {
            ConnectionEvent::SoftError(format!(
                "{} more soft errors {while_waiting} (the last: {})",
                self.soft_errors, self.last_soft_error
            ))
        });
        let path = (self.path_changes > 0).then(|| {
            ConnectionEvent::PathChange(format!(
                "{} more path changes {while_waiting} (the last: {})",
                self.path_changes, self.last_path_change
            ))
        });
        let clone = self.last_clone_error.map(|e| {
            ConnectionEvent::CloneError(Error::new(
                e.reason,
                format!(
                    "{} more Clones failed {while_waiting} (the last: {})",
                    self.clone_errors, e.message
                ),
            ))
        });
        soft.into_iter().chain(path).chain(clone)
    }
}

impl Events {
    /// Queue `event` (Closed or ConnectionError is the last: none follows
    /// it), or count it while [`EVENTS_WAITING_MAX`] wait. True if queued.
    fn queue_event(&mut self, event: ConnectionEvent) -> bool {
        if self.ended {
            return false;
        }
        let last = matches!(
            event,
            ConnectionEvent::Closed | ConnectionEvent::ConnectionError(_)
        );
        let q = self.queue.get_or_insert_with(Default::default);
        if last {
            // What was counted goes before the last event.
            q.tell_untold();
            q.waiting.push(event);
            self.ended = true;
        } else if q.waiting.len() < EVENTS_WAITING_MAX && q.untold.is_empty() {
            // (Once counting started it goes on until the waiting ones are
            // taken: a newer event is not told before the count of older.)
            q.waiting.push(event);
        } else {
            q.untold.count(event);
            return false;
        }
        true
    }

    /// The next event waiting, if any.
    fn take_event(&mut self) -> Option<ConnectionEvent> {
        let q = self.queue.as_mut()?;
        if q.waiting.is_empty() {
            return None;
        }
        let e = q.waiting.remove(0);
        if q.waiting.is_empty() {
            // The waiting ones are taken: now what was counted.
            q.tell_untold();
            if q.waiting.is_empty() {
                // Events are rare: let go of the queue's allocation.
                self.queue = None;
            }
        }
        Some(e)
    }
}

/// The next event of a Connection (`Connection::next_event`).
pub(super) struct NextEvent<'a> {
    inner: &'a Inner,
    key: Option<usize>,
}

impl Inner {
    pub(super) fn next_event(&self) -> NextEvent<'_> {
        NextEvent {
            inner: self,
            key: None,
        }
    }
}

impl Future for NextEvent<'_> {
    type Output = Option<ConnectionEvent>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ConnectionEvent>> {
        let this = self.get_mut();
        let mut ev = this.inner.events.lock().unwrap();
        if let Some(e) = ev.take_event() {
            ev.waiters.remove(this.key.take());
            return Poll::Ready(Some(e));
        }
        if ev.ended {
            ev.waiters.remove(this.key.take());
            return Poll::Ready(None);
        }
        ev.waiters.register(&mut this.key, cx.waker());
        Poll::Pending
    }
}

impl Drop for NextEvent<'_> {
    fn drop(&mut self) {
        self.inner.remove_waiter(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Past EVENTS_WAITING_MAX waiting, SoftErrors, PathChanges and
    /// CloneErrors are counted, each kind told once as one event after the
    /// waiting ones were taken, with the count and the last one's words;
    /// the last event is never counted, and comes after them.
    #[test]
    fn events_past_the_bound_are_counted_then_told_before_the_last() {
        let mut ev = Events::default();
        for i in 0..EVENTS_WAITING_MAX + 10 {
            ev.queue_event(ConnectionEvent::SoftError(format!("soft {i}")));
        }
        for i in 0..3 {
            ev.queue_event(ConnectionEvent::PathChange(format!("path {i}")));
        }
        ev.queue_event(ConnectionEvent::CloneError(Error::new(
            ErrorReason::EstablishmentFailed,
            "no",
        )));
        assert_eq!(
            ev.queue.as_ref().map(|q| q.waiting.len()),
            Some(EVENTS_WAITING_MAX),
            "the queue stays bounded"
        );
        assert!(ev.queue_event(ConnectionEvent::ConnectionError(Error::new(
            ErrorReason::ConnectionAborted,
            "gone"
        ))));
        assert!(!ev.queue_event(ConnectionEvent::SoftError("late".into())));
        let mut got = Vec::new();
        while let Some(e) = ev.take_event() {
            got.push(e);
        }
        assert_eq!(got.len(), EVENTS_WAITING_MAX + 4, "{got:?}");
        for (i, e) in got.iter().take(EVENTS_WAITING_MAX).enumerate() {
            assert_eq!(e, &ConnectionEvent::SoftError(format!("soft {i}")));
        }
        let tail: Vec<String> = got[EVENTS_WAITING_MAX..]
            .iter()
            .map(|e| format!("{e:?}"))
            .collect();
        assert!(
            tail[0].contains("10 more soft errors") && tail[0].contains("soft 73"),
            "{tail:?}"
        );
        assert!(
            tail[1].starts_with("PathChange") && tail[1].contains("3 more path changes"),
            "{tail:?}"
        );
        assert!(
            tail[2].starts_with("CloneError") && tail[2].contains("1 more Clones failed"),
            "{tail:?}"
        );
        assert!(tail[3].starts_with("ConnectionError"), "{tail:?}");
        assert!(ev.queue.is_none(), "an empty queue holds no allocation");
    }

    /// Once counting started, an event that comes after a waiting one was
    /// taken is counted too: the count of older events is never told after
    /// a newer one. Closed still ends them.
    #[test]
    fn a_newer_event_does_not_pass_the_count_of_older_ones() {
        let mut ev = Events::default();
        for i in 0..=EVENTS_WAITING_MAX {
            ev.queue_event(ConnectionEvent::PathChange(format!("path {i}")));
        }
        ev.take_event().expect("the first");
        assert!(!ev.queue_event(ConnectionEvent::PathChange("newest".into())));
        let mut got = Vec::new();
        while let Some(e) = ev.take_event() {
            got.push(format!("{e:?}"));
        }
        assert_eq!(got.len(), EVENTS_WAITING_MAX, "{got:?}");
        let told = got.last().unwrap();
        assert!(
            told.contains("2 more path changes") && told.contains("newest"),
            "{told}"
        );
        assert!(ev.queue_event(ConnectionEvent::Closed));
        assert!(!ev.queue_event(ConnectionEvent::SoftError("after".into())));
        assert_eq!(ev.take_event(), Some(ConnectionEvent::Closed));
        assert_eq!(ev.take_event(), None);
    }

    /// Counted events are told once the waiting ones were taken, though
    /// no last event comes; events after that queue as before.
    #[test]
    fn counted_events_are_told_when_the_queue_empties() {
        let mut ev = Events::default();
        for i in 0..EVENTS_WAITING_MAX + 2 {
            ev.queue_event(ConnectionEvent::SoftError(format!("soft {i}")));
        }
        for _ in 0..EVENTS_WAITING_MAX - 1 {
            ev.take_event().expect("a waiting event");
        }
        assert_eq!(
            ev.queue.as_ref().map(|q| q.untold.soft_errors),
            Some(2),
            "not told while one still waits"
        );
        assert_eq!(
            ev.take_event(),
            Some(ConnectionEvent::SoftError(format!(
                "soft {}",
                EVENTS_WAITING_MAX - 1
            )))
        );
        assert!(ev.queue_event(ConnectionEvent::SoftError("after".into())));
        let told = format!("{:?}", ev.take_event().expect("the count"));
        assert!(told.contains("2 more soft errors"), "{told}");
        assert_eq!(
            ev.take_event(),
            Some(ConnectionEvent::SoftError("after".into()))
        );
        assert_eq!(ev.take_event(), None);
    }

    /// A waiter polled again keeps one place; dropped (taken out), it is
    /// not woken; the others are, once each.
    #[test]
    fn waiters_register_once_and_leave_when_taken_out() {
        let a = Arc::new(Count(AtomicUsize::new(0)));
        let b = Arc::new(Count(AtomicUsize::new(0)));
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut w = Waiters::default();
        let (mut ka, mut kb) = (None, None);
        w.register(&mut ka, &wa);
        w.register(&mut ka, &wa);
        w.register(&mut kb, &wb);
        assert_eq!(w.list.len(), 2);
        w.remove(kb);
        w.wake_all();
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 0);
        assert!(w.list.is_empty());
    }
}
