//! `postsocket::browser::promise`, the futures-to-Promises executor the npm
//! package's `send` and `receive` run on, in headless Chromium. Needs no
//! server: `CHROMEDRIVER=/usr/bin/chromedriver
//! WASM_BINDGEN_TEST_WEBDRIVER_JSON=$PWD/webdriver.json cargo test --target
//! wasm32-unknown-unknown -p postsocket --test browser_tasks`.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use futures::channel::oneshot;
use postsocket::browser::promise;
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
