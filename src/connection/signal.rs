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

    /// Queue an unsolicited event, unless the last one was queued already.
    pub(super) fn emit(&self, event: ConnectionEvent) {
        self.queue_event(event, false);
    }

    /// Queue `event` and end the events: it is the last.
    pub(super) fn emit_last(&self, event: ConnectionEvent) {
        self.queue_event(event, true);
    }

    fn queue_event(&self, event: ConnectionEvent, last: bool) {
        let mut ev = self.events.lock().unwrap();
        if ev.ended {
            return;
        }
        ev.queue.push(event);
        ev.ended = last;
        ev.waiters.wake_all();
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

/// The unsolicited events not yet taken, and the futures waiting for one
/// or for the stop.
#[derive(Default)]
pub(super) struct Events {
    /// (A Vec: a Connection gets few events, most none.)
    queue: Vec<ConnectionEvent>,
    /// The last event was queued (Closed or ConnectionError): none follows.
    ended: bool,
    waiters: Waiters,
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
        if !ev.queue.is_empty() {
            let e = ev.queue.remove(0);
            if ev.queue.is_empty() {
                // Events are rare: let go of the queue's allocation.
                ev.queue = Vec::new();
            }
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
