//! `postsocket_web::executor::promise`, the futures-to-Promises executor the npm
//! package's `send` and `receive` run on, in headless Chromium. Needs no
//! server: `CHROMEDRIVER=/usr/bin/chromedriver
//! WASM_BINDGEN_TEST_WEBDRIVER_JSON=$PWD/webdriver.json cargo test --target
//! wasm32-unknown-unknown -p postsocket-web --test executor`.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use futures::channel::oneshot;
use postsocket_web::executor::promise;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn a_ready_future_gives_a_settled_promise() {
    let ok = promise(async { Ok(JsValue::from(7)) });
    assert_eq!(JsFuture::from(ok).await.expect("resolved"), 7);
    let err = promise(async { Err(JsValue::from_str("refused")) });
    assert_eq!(JsFuture::from(err).await.expect_err("rejected"), "refused");
}

#[wasm_bindgen_test]
async fn waiting_futures_settle_when_woken_in_any_order() {
    // 50 futures wait on channels; they are woken from other tasks in
    // reverse order, each channel's sender woken twice over (a dropped
    // second sender), and every Promise settles once with its own value.
    let mut senders = Vec::new();
    let mut promises = Vec::new();
    for i in 0..50u32 {
        let (tx, rx) = oneshot::channel::<u32>();
        senders.push((i, tx));
        promises.push(promise(async move {
            match rx.await {
                Ok(v) => Ok(JsValue::from(v)),
                Err(_) => Err(JsValue::from_str("the sender was dropped")),
            }
        }));
    }
    wasm_bindgen_futures::spawn_local(async move {
        for (i, tx) in senders.into_iter().rev() {
            if i == 7 {
                drop(tx); // rejects that one
            } else {
                let _ = tx.send(i * 10);
            }
        }
    });
    for (i, p) in promises.into_iter().enumerate() {
        let r = JsFuture::from(p).await;
        if i == 7 {
            assert_eq!(r.expect_err("rejected"), "the sender was dropped");
        } else {
            assert_eq!(r.expect("resolved"), (i as u32 * 10));
        }
    }
}

#[wasm_bindgen_test]
async fn reused_slots_settle_each_of_their_tasks() {
    // Three rounds of 20 tasks: each round reuses the slots (and wakers)
    // the last round's finished tasks left. Wakers kept from earlier rounds
    // are woken again (stale wakes): they poll whichever task has the slot
    // now once more, which changes nothing.
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::task::{Poll, Waker};
    let kept: Rc<RefCell<Vec<Waker>>> = Rc::default();
    for round in 0..3u32 {
        let mut senders = Vec::new();
        let mut promises = Vec::new();
        for _ in 0..20u32 {
            let (tx, rx) = oneshot::channel::<u32>();
            let kept = kept.clone();
            promises.push(promise(async move {
                futures::future::poll_fn(|cx| {
                    kept.borrow_mut().push(cx.waker().clone());
                    Poll::Ready(())
                })
                .await;
                let v = rx
                    .await
                    .map_err(|_| JsValue::from_str("the sender was dropped"))?;
                Ok(JsValue::from(v + round * 1000))
            }));
            senders.push(tx);
        }
        for w in kept.borrow().iter() {
            w.wake_by_ref();
        }
        for (i, tx) in senders.into_iter().enumerate() {
            tx.send(i as u32).expect("the task waits");
        }
        for (i, p) in promises.into_iter().enumerate() {
            let v = JsFuture::from(p).await.expect("resolved");
            assert_eq!(v, i as u32 + round * 1000, "round {round}, task {i}");
        }
    }
}

/// A task of the generic settler waiting for a value: its sender and Promise
/// (which rejects with "dropped" if the sender goes).
fn generic_waiting() -> (oneshot::Sender<u32>, js_sys::Promise) {
    let (tx, rx) = oneshot::channel::<u32>();
    let p = promise(async move {
        rx.await
            .map(JsValue::from)
            .map_err(|_| JsValue::from_str("dropped"))
    });
    (tx, p)
}

// A binding's own settler for the test below: its resolvers wait in their
// own array, and settling builds the value in the same call.
#[wasm_bindgen::prelude::wasm_bindgen(module = "/tests/executor.js")]
extern "C" {
    fn pending_pair(slot: usize) -> js_sys::Promise;
    fn settle_pair(slot: usize, ok: bool, n: u32);
    fn settled_pair(ok: bool, n: u32) -> js_sys::Promise;
    fn field(o: &JsValue, name: &str) -> JsValue;
}

static PAIR: postsocket_web::executor::Settler<Result<u32, u32>> =
    postsocket_web::executor::Settler {
        pending: pending_pair,
        settle: |slot, r| match r {
            Ok(n) => settle_pair(slot, true, n),
            Err(n) => settle_pair(slot, false, n),
        },
        settled: |r| match r {
            Ok(n) => settled_pair(true, n),
            Err(n) => settled_pair(false, n),
        },
    };

#[wasm_bindgen_test]
async fn a_settler_of_its_own_makes_and_settles_its_promises() {
    use postsocket_web::executor::promise_with;
    // Ready at the first poll: `settled` makes the Promise.
    let v = JsFuture::from(promise_with(async { Ok(3) }, &PAIR))
        .await
        .expect("resolved");
    assert_eq!(field(&v, "doubled"), 6);
    assert_eq!(field(&v, "waited"), false);
    let e = JsFuture::from(promise_with(async { Err(4) }, &PAIR)).await;
    assert_eq!(e.expect_err("rejected"), "refused 4");
    // Waiting, over two rounds of reused slots, interleaved with tasks of
    // the generic settler: each Promise settles once, through its own.
    for round in 0..2u32 {
        let mut senders = Vec::new();
        let mut own = Vec::new();
        let mut generic = Vec::new();
        for _ in 0..10 {
            let (tx, rx) = oneshot::channel::<u32>();
            own.push(promise_with(
                async move { rx.await.map_err(|_| 999) },
                &PAIR,
            ));
            senders.push(tx);
            let (gtx, p) = generic_waiting();
            generic.push(p);
            senders.push(gtx);
        }
        for (k, tx) in senders.into_iter().enumerate() {
            if k == 4 {
                drop(tx); // own task 2 rejects
            } else {
                tx.send(k as u32 + round * 100).expect("the task waits");
            }
        }
        for (i, p) in own.into_iter().enumerate() {
            let r = JsFuture::from(p).await;
            if i == 2 {
                assert_eq!(r.expect_err("rejected"), "refused 999");
            } else {
                let v = r.expect("resolved");
                let n = 2 * i as u32 + round * 100;
                assert_eq!(field(&v, "n"), n, "round {round}, task {i}");
                assert_eq!(field(&v, "doubled"), 2 * n);
                assert_eq!(field(&v, "waited"), true);
            }
        }
        for (i, p) in generic.into_iter().enumerate() {
            let v = JsFuture::from(p).await.expect("resolved");
            assert_eq!(
                v,
                2 * i as u32 + 1 + round * 100,
                "round {round}, generic {i}"
            );
        }
    }
}

// The JS side of a binding that makes its Promises itself (as the npm
// package's `receive` does): the resolve waits at the task's slot.
#[wasm_bindgen::prelude::wasm_bindgen(module = "/tests/executor.js")]
extern "C" {
    fn promise_at(slot: usize) -> js_sys::Promise;
    fn settle_at(slot: usize, n: u32);
}

#[wasm_bindgen_test]
async fn a_task_started_without_a_promise_settles_through_its_slot() {
    use postsocket_web::executor::{start, Started};
    // Ready at the first poll: the output comes back at once.
    match start(async { 7u32 }, settle_at) {
        Started::Ready(n) => assert_eq!(n, 7),
        Started::Waiting(_) => panic!("a ready future does not wait"),
    }
    // Waiting: the Promise is made after the call, and settles when the
    // task finishes.
    let (tx, rx) = oneshot::channel::<u32>();
    let Started::Waiting(slot) = start(async move { rx.await.unwrap_or(0) }, settle_at) else {
        panic!("a future waiting for a channel waits");
    };
    let p = promise_at(slot);
    tx.send(41).expect("the task waits");
    assert_eq!(JsFuture::from(p).await.expect("resolved"), 41);
    // Woken during its first poll: it runs again only after the caller
    // made its Promise (settling earlier would find no resolver and throw).
    let mut yielded = false;
    let once = std::future::poll_fn(move |cx| {
        if yielded {
            return std::task::Poll::Ready(5u32);
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    });
    let Started::Waiting(slot) = start(once, settle_at) else {
        panic!("it yields once");
    };
    let p = promise_at(slot);
    assert_eq!(JsFuture::from(p).await.expect("resolved"), 5);
    // Mixed with the generic settler's tasks over reused slots, finished in
    // reverse order: each Promise gets its own task's value.
    for round in 0..2u32 {
        let mut senders = Vec::new();
        let mut started = Vec::new();
        let mut generic = Vec::new();
        for _ in 0..5 {
            let (tx, rx) = oneshot::channel::<u32>();
            let Started::Waiting(slot) = start(async move { rx.await.unwrap_or(0) }, settle_at)
            else {
                panic!("it waits for its channel");
            };
            started.push(promise_at(slot));
            senders.push(tx);
            let (gtx, p) = generic_waiting();
            generic.push(p);
            senders.push(gtx);
        }
        for (k, tx) in senders.into_iter().enumerate().rev() {
            tx.send(k as u32 + round * 100).expect("the task waits");
        }
        for (i, p) in started.into_iter().enumerate() {
            let v = JsFuture::from(p).await.expect("resolved");
            assert_eq!(v, 2 * i as u32 + round * 100, "round {round}, started {i}");
        }
        for (i, p) in generic.into_iter().enumerate() {
            let v = JsFuture::from(p).await.expect("resolved");
            assert_eq!(
                v,
                2 * i as u32 + 1 + round * 100,
                "round {round}, generic {i}"
            );
        }
    }
}

/// A task waiting on a Connection's `receive()` runs as the browser
/// WebSocket's message handler ends (the hook the core calls there), not
/// from a later microtask: the npm package's `receive` settles one hop
/// sooner. Needs the native echo helper, as tests/browser_websocket.rs does
/// (`POSTSOCKET_WS_ECHO_PORT` at compile time; scripts/test.sh starts it).
#[wasm_bindgen_test]
async fn a_receive_woken_by_a_message_runs_as_the_handler_ends() {
    use postsocket::{Preconnection, RemoteEndpoint, SecurityParameters, StackId};
    use postsocket_web::executor::event_end_runs;
    let port: u16 = option_env!("POSTSOCKET_WS_ECHO_PORT")
        .unwrap_or_else(|| {
            panic!("POSTSOCKET_WS_ECHO_PORT is not set: run scripts/test.sh (it starts ws-echo)")
        })
        .parse()
        .expect("POSTSOCKET_WS_ECHO_PORT: a port number");
    let remote = RemoteEndpoint::new()
        .with_ip_address(std::net::Ipv4Addr::LOCALHOST.into())
        .and_then(|r| r.with_port(port))
        .expect("endpoint");
    let mut pre = Preconnection::new(
        Vec::new(),
        vec![remote],
        postsocket::TransportProperties::new(),
        SecurityParameters::disabled(),
    );
    pre.set_transport_context(postsocket::TransportContext::new());
    let conn = pre
        .initiate_with_timeout(std::time::Duration::from_secs(10))
        .await
        .expect("initiate");
    assert_eq!(conn.stack(), StackId::Ws);
    let before = event_end_runs();
    const ROUNDS: u8 = 5;
    for i in 0..ROUNDS {
        // The receive waits (nothing is buffered) before the echo is sent.
        let c = conn.clone();
        let received = promise(async move {
            c.receive()
                .await
                .map(|m| JsValue::from(m.data()[0]))
                .map_err(|e| JsValue::from_str(&e.to_string()))
        });
        conn.send_message(vec![i; 16]).await.expect("send");
        assert_eq!(JsFuture::from(received).await.expect("received"), i);
    }
    assert!(
        event_end_runs() - before >= u64::from(ROUNDS),
        "{} of {ROUNDS} waiting receives ran as the message handler ended",
        event_end_runs() - before
    );
    conn.close().await.expect("close");
}
