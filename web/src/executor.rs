//! The bindings' executor: futures to Promises, with as little work per
//! Message as we can manage.
//!
//! Every `send` and `receive` of the npm package is a Rust future turned
//! into a Promise, so this is on the per-Message path.
//! `wasm_bindgen_futures::future_to_promise` builds the Promise through a
//! Rust closure, spawns a task, and polls the future again from a microtask
//! before it ever waits: together the larger part of a pending `receive()`'s
//! cost. Here instead:
//!
//! - the future is polled once, at the call, with its task's own waker;
//! - if it is ready (most sends, and a receive with a Message buffered) the
//!   answer is an already-settled Promise;
//! - otherwise it waits in a table of the page's thread, and its Promise's
//!   resolve and reject functions wait in a JS array at the same index (one
//!   call makes the Promise, one settles it; the values move to JS without
//!   a further call to release them). A wake queues the task for the next
//!   microtask, where it is polled again and settles the Promise; a wake
//!   from a postsocket browser stack's event handler runs it as the handler
//!   ends instead, with nothing else of ours on the stack (the core calls
//!   the hook this executor installs, `at_event_end`);
//! - a binding may make and settle its Promises itself ([`promise_with`] and
//!   a [`Settler`]), to build the value in the same call into JS that
//!   settles the Promise; or also make the Promise in JS, taking only the
//!   task's slot ([`start`]; the npm package's `receive` does, one call
//!   from wasm into JS fewer).
//!
//! The wasm32 build has one thread, the page's: wakes come from browser
//! events and other futures on it.

use postsocket::__web_bindings::{inside_browser_event, set_browser_event_end};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use wasm_bindgen::prelude::*;

// The resolvers are module state of glue.js (one module for all of this
// crate's JS: each module is one more fetch when the package loads).
#[wasm_bindgen(module = "/src/glue.js")]
extern "C" {
    /// A new Promise whose resolve and reject wait at index `id` for [`settle`].
    fn pending_promise(id: usize) -> js_sys::Promise;
    /// Resolve (`ok`) or reject the Promise at `id` with `value`.
    fn settle(id: usize, ok: bool, value: JsValue);
    /// An already-settled Promise: resolved with `value` if `ok`, else rejected.
    fn settled(ok: bool, value: JsValue) -> js_sys::Promise;
    fn queue_microtask(f: &Closure<dyn FnMut()>);
}

/// How a task's Promise is made and settled. [`promise`] uses the generic
/// one, where the future's `Result<JsValue, JsValue>` resolves or rejects;
/// a binding may give its own to [`promise_with`], to build the value in
/// the same call into JS that settles the Promise (one call per Message
/// fewer on a binding's hot path).
///
/// `pending` and `settle` work on the binding's own table of resolvers,
/// indexed by the task's slot: a slot belongs to one live task at a time,
/// whichever settler it uses, and is freed only after its task settled.
pub struct Settler<T> {
    /// A new Promise whose resolve and reject wait at index `slot`.
    pub pending: fn(slot: usize) -> js_sys::Promise,
    /// Settle the Promise waiting at `slot` with the task's output. It runs
    /// inside the executor's loop over woken tasks, so it must not panic
    /// or throw (a JS exception would end the loop with other woken tasks
    /// not yet polled).
    pub settle: fn(slot: usize, output: T),
    /// An already-settled Promise, for a task ready at its first poll.
    pub settled: fn(output: T) -> js_sys::Promise,
}

/// The generic settler: `Ok` resolves, `Err` rejects.
static RESULT: Settler<Result<JsValue, JsValue>> = Settler {
    pending: pending_promise,
    settle: |slot, outcome| match outcome {
        Ok(v) => settle(slot, true, v),
        Err(e) => settle(slot, false, e),
    },
    settled: settled_promise,
};

/// A future with what settles its Promise: polled until it is ready, then
/// it settles the Promise at its slot.
trait Job {
    /// Poll the future; when it is ready, settle the Promise at `slot`.
    fn poll_job(self: Pin<&mut Self>, cx: &mut Context<'_>, slot: usize) -> Poll<()>;
}

struct Settling<F: Future> {
    fut: F,
    settle: fn(usize, F::Output),
}

impl<F: Future> Settling<F> {
    fn fut(self: Pin<&mut Self>) -> Pin<&mut F> {
        // SAFETY: `fut` is pinned with `self` (never moved out of it);
        // `settle` is a plain fn pointer.
        unsafe { self.map_unchecked_mut(|s| &mut s.fut) }
    }
}

impl<F: Future> Job for Settling<F> {
    fn poll_job(mut self: Pin<&mut Self>, cx: &mut Context<'_>, slot: usize) -> Poll<()> {
        match self.as_mut().fut().poll(cx) {
            Poll::Ready(output) => {
                // Settling runs no JS of the page now (Promise reactions
                // are jobs), and the slot is still this task's.
                (self.settle)(slot, output);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A future still running (its Promise waits in JS at the same index).
struct Waiting {
    job: Pin<Box<dyn Job>>,
}

/// One task's place in the [`Table`].
enum Slot {
    Free,
    /// Being polled (out of the table meanwhile); `rewoken` if a run found
    /// it woken in the meantime, so it must be polled again if it waits.
    Running {
        rewoken: bool,
    },
    Waiting(Waiting),
}

/// The futures still running, in slots: a task's id is its slot. A freed
/// slot is reused, so a late wake for a finished task polls whichever task
/// has the slot now once more, which a future must allow anyway.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    /// Each slot's waker, made once: every task in the slot uses it.
    wakers: Vec<Waker>,
    free: Vec<usize>,
}

impl Table {
    /// A slot for a new task, which is about to be polled, and its waker.
    fn reserve(&mut self) -> (usize, Waker) {
        let id = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot::Free);
            let id = self.slots.len() - 1;
            self.wakers.push(Waker::from(Arc::new(TaskWaker(id))));
            id
        });
        self.slots[id] = Slot::Running { rewoken: false };
        (id, self.wakers[id].clone())
    }

    /// The waker of slot `id`.
    fn waker(&self, id: usize) -> Waker {
        self.wakers[id].clone()
    }

    /// The task in `id`, to poll now: `None` if it finished or is running
    /// (then marked to poll again when it is done).
    fn start(&mut self, id: usize) -> Option<Waiting> {
        let slot = self.slots.get_mut(id)?;
        match std::mem::replace(slot, Slot::Running { rewoken: false }) {
            Slot::Waiting(task) => Some(task),
            Slot::Running { .. } => {
                *slot = Slot::Running { rewoken: true };
                None
            }
            Slot::Free => {
                *slot = Slot::Free;
                None
            }
        }
    }

    /// Back from a poll: still waiting, or finished (the slot is freed).
    /// True when it waits but was woken while running: wake it again.
    fn finish_poll(&mut self, id: usize, waiting: Option<Waiting>) -> bool {
        let rewoken = matches!(self.slots[id], Slot::Running { rewoken: true });
        match waiting {
            Some(task) => {
                self.slots[id] = Slot::Waiting(task);
                rewoken
            }
            None => {
                self.slots[id] = Slot::Free;
                self.free.push(id);
                false
            }
        }
    }
}

thread_local! {
    /// The futures still running.
    static WAITING: RefCell<Table> = RefCell::new(Table::default());
    /// Task ids woken since the last run.
    static WOKEN: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// The list a run works through, kept empty between runs: it and
    /// [`WOKEN`] swap, so a wake never allocates once both have room.
    static RUNNING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
    /// Whether a microtask to run [`WOKEN`] is queued.
    static QUEUED: Cell<bool> = const { Cell::new(false) };
    /// The one callback every such microtask calls.
    static RUN: Closure<dyn FnMut()> = Closure::new(run_woken);
    /// How many times [`at_event_end`] found woken tasks and ran them.
    static EVENT_END_RUNS: Cell<u64> = const { Cell::new(0) };
}

/// The core's hook where its browser stacks' outermost event handler (a
/// message arrived, a channel opened) ends: the tasks the handler woke run
/// now, not from a microtask. Installed by [`start`].
fn at_event_end() {
    if WOKEN.with(|w| !w.borrow().is_empty()) {
        EVENT_END_RUNS.with(|n| n.set(n.get() + 1));
        run_woken();
    }
}

/// How many times, on the page's thread, tasks woken by a browser stack's
/// event ran as its handler ended rather than from a microtask (for tests
/// and profiling: a `receive()` waiting when its Message arrives counts).
pub fn event_end_runs() -> u64 {
    EVENT_END_RUNS.with(Cell::get)
}

/// A task's waker: its id, queued to run when woken.
struct TaskWaker(usize);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        woken(self.0);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        woken(self.0);
    }
}

fn woken(id: usize) {
    WOKEN.with(|w| w.borrow_mut().push(id));
    // Inside an event handler the task runs when the handler ends.
    if !inside_browser_event() && !QUEUED.with(|q| q.replace(true)) {
        RUN.with(queue_microtask);
    }
}

/// Poll every woken task once; settle the Promises of those that finished.
/// (A microtask queued earlier may then find nothing to do.)
fn run_woken() {
    QUEUED.with(|q| q.set(false));
    let mut ids = RUNNING.with(|r| std::mem::take(&mut *r.borrow_mut()));
    WOKEN.with(|w| std::mem::swap(&mut ids, &mut *w.borrow_mut()));
    for &id in &ids {
        // Out of the table while it runs: its poll may start other tasks.
        let Some((mut task, waker)) = WAITING.with(|t| {
            let mut t = t.borrow_mut();
            t.start(id).map(|task| (task, t.waker(id)))
        }) else {
            continue;
        };
        let mut cx = Context::from_waker(&waker);
        match task.job.as_mut().poll_job(&mut cx, id) {
            Poll::Ready(()) => {
                // Settled: the slot is free for the next task.
                drop(task);
                WAITING.with(|t| t.borrow_mut().finish_poll(id, None));
            }
            Poll::Pending => {
                if WAITING.with(|t| t.borrow_mut().finish_poll(id, Some(task))) {
                    woken(id);
                }
            }
        }
    }
    // Kept for the next run (tasks woken meanwhile are in `WOKEN`, and wait
    // for the microtask they queued). A nested run (a poll that ran an
    // event handler) left its own list: keep the larger.
    ids.clear();
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        if r.capacity() < ids.capacity() {
            *r = ids;
        }
    });
}

/// Drop the task waiting in `slot` (a [`start`]ed future, and with it what
/// it waited on): true if there was one. Its Promise is the caller's to
/// settle (with an AbortError, say). A task that is running now (polling)
/// is not dropped; a late wake for the freed slot polls whichever task has
/// it then once more, which a future must allow anyway.
pub fn cancel(slot: usize) -> bool {
    let task = WAITING.with(|t| {
        let mut t = t.borrow_mut();
        match t.slots.get_mut(slot) {
            Some(s @ Slot::Waiting(_)) => {
                let task = std::mem::replace(s, Slot::Free);
                t.free.push(slot);
                Some(task)
            }
            _ => None,
        }
    });
    // Dropped outside the table: its drop may wake or start other tasks.
    task.is_some()
}

/// A Promise of `fut`, which runs until it finishes on the page's thread:
/// settled at once if it is ready on its first poll. For JS bindings over
/// postsocket (the npm package's are built on it); `fut` resolves to the
/// Promise's value or rejects with its error.
pub fn promise<F>(fut: F) -> js_sys::Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    promise_with(fut, &RESULT)
}

/// [`promise`] with a binding's own [`Settler`]: the Promise of `fut`,
/// made and settled by `settler`.
pub fn promise_with<F, T>(fut: F, settler: &'static Settler<T>) -> js_sys::Promise
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    match start(fut, settler.settle) {
        Started::Ready(output) => (settler.settled)(output),
        Started::Waiting(slot) => (settler.pending)(slot),
    }
}

/// What [`start`] gives: the future's output, or the slot where it waits.
pub enum Started<T> {
    /// The future was ready at its first poll.
    Ready(T),
    /// The future waits; `settle` will get its output with this slot.
    Waiting(usize),
}

/// Run `fut` on the page's thread, as [`promise_with`] does, without
/// making its Promise: for a binding whose JS side makes the Promise itself
/// (one call from wasm into JS fewer). Polled once now; if it waits, its
/// output goes to `settle` with the slot returned here.
///
/// `settle` never runs while `start` runs: woken tasks run from a
/// microtask, or as the outermost browser event handler of ours ends. So
/// the JS code that called into wasm may put the Promise's resolvers where
/// `settle` finds them at the slot, as long as it does so before it
/// returns or awaits. `settle` must not panic or throw (see
/// [`Settler::settle`]).
pub fn start<F, T>(fut: F, settle: fn(usize, T)) -> Started<T>
where
    F: Future<Output = T> + 'static,
    T: 'static,
{
    // Tasks wake only after a start: installing the hook here is in time.
    set_browser_event_end(Some(at_event_end));
    let (id, waker) = WAITING.with(|t| t.borrow_mut().reserve());
    let mut job = Box::pin(Settling { fut, settle });
    let ready = match job.as_mut().fut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(output) => output,
        Poll::Pending => {
            let task = Waiting { job };
            if WAITING.with(|t| t.borrow_mut().finish_poll(id, Some(task))) {
                woken(id);
            }
            return Started::Waiting(id);
        }
    };
    drop(job);
    WAITING.with(|t| t.borrow_mut().finish_poll(id, None));
    Started::Ready(ready)
}

/// An already-settled Promise: resolved with `value`, or rejected with it
/// (`Err`). One call into JS, the value moved there; for bindings whose
/// answer is known at the call.
pub fn settled_promise(outcome: Result<JsValue, JsValue>) -> js_sys::Promise {
    match outcome {
        Ok(v) => settled(true, v),
        Err(e) => settled(false, e),
    }
}
