//! Nothing leaks: after many calls, sequential and concurrent, the engine and the switch hold nothing.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tapir::core::caps::LineCaps;
use tapir::core::state::CallStateKind as K;
use tapir::{Engine, Error, OpenOptions};
use tapir_provider::{EventSink, Provider};
use tapir_tests::{Pbx, auto_answer, pbx_with, poll_state};

async fn settle(pbx: &Pbx) {
    for _ in 0..100_000 {
        if pbx.engine.stats().calls == 0 && pbx.switch.live_legs() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never settled: {:?}", pbx.engine.stats());
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_sequential_calls_leave_nothing_behind() {
    let pbx = pbx_with(&["100", "200"]).await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (sup, _) = pbx
        .app(
            "supervisor",
            &[
                ("100", OpenOptions::monitor()),
                ("200", OpenOptions::monitor()),
            ],
        )
        .await;
    let answering = auto_answer(bob.clone());
    let watching = auto_answer(sup.clone());
    for _ in 0..10_000 {
        let a = alice.make_call(l[0], Some("200")).await.unwrap();
        poll_state(&alice, a, K::Connected).await;
        alice.drop_call(a).await.unwrap();
        alice.deallocate(a).unwrap();
        while alice.try_next_event().is_some() {}
        // Bob hangs up his side on his own task; until he has, extension 200 is (rightly) busy.
        settle(&pbx).await;
    }
    settle(&pbx).await;
    pbx.assert_empty();
    for s in [alice, bob, sup] {
        s.logoff().await;
    }
    answering.await.unwrap();
    watching.await.unwrap();
    assert_eq!(pbx.engine.stats(), Default::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_leave_nothing_behind() {
    const N: usize = 1_000;
    let callers: Vec<String> = (0..N).map(|i| format!("{}", 10_000 + i)).collect();
    let callees: Vec<String> = (0..N).map(|i| format!("{}", 20_000 + i)).collect();
    let all: Vec<&str> = callers.iter().chain(&callees).map(String::as_str).collect();
    let pbx = pbx_with(&all).await;
    let caller_opens: Vec<(&str, OpenOptions)> = callers
        .iter()
        .map(|n| (n.as_str(), OpenOptions::owner()))
        .collect();
    let callee_opens: Vec<(&str, OpenOptions)> = callees
        .iter()
        .map(|n| (n.as_str(), OpenOptions::owner()))
        .collect();
    let monitor_opens: Vec<(&str, OpenOptions)> =
        all.iter().map(|n| (*n, OpenOptions::monitor())).collect();
    let (alice, lines) = pbx.app("alice", &caller_opens).await;
    let (bob, _) = pbx.app("bob", &callee_opens).await;
    let (sup, _) = pbx.app("supervisor", &monitor_opens).await;
    let answering = auto_answer(bob.clone());
    let watching = auto_answer(sup.clone());

    let mut tasks = Vec::new();
    for (line, callee) in lines.into_iter().zip(callees.clone()) {
        let s = alice.clone();
        tasks.push(tokio::spawn(async move {
            let a = s.make_call(line, Some(&callee)).await.unwrap();
            poll_state(&s, a, K::Connected).await;
            s.drop_call(a).await.unwrap();
            s.deallocate(a).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    settle(&pbx).await;
    pbx.assert_empty();
    for s in [alice, bob, sup] {
        s.logoff().await;
    }
    answering.await.unwrap();
    watching.await.unwrap();
    assert_eq!(pbx.engine.stats(), Default::default());
}

/// A provider that keeps the event sink it is given, as real providers do, and says when it is dropped.
struct Keeper {
    sink: Mutex<Option<EventSink>>,
    dropped: Arc<AtomicBool>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Provider for Keeper {
    fn name(&self) -> &str {
        "keeper"
    }
    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        *self.sink.lock().unwrap() = Some(sink);
        Ok(vec![])
    }
    async fn stop(&self) {}
}

#[tokio::test]
async fn the_last_handle_dropped_frees_the_providers_even_one_holding_its_event_sink() {
    let dropped = Arc::new(AtomicBool::new(false));
    let engine = Engine::builder()
        .provider(Keeper {
            sink: Mutex::new(None),
            dropped: dropped.clone(),
        })
        .build()
        .await
        .unwrap();
    let session = engine.logon("app").await.unwrap();
    drop(engine);
    assert!(
        !dropped.load(Ordering::SeqCst),
        "a session keeps the providers it uses"
    );
    assert!(session.lines().is_empty());
    drop(session);
    assert!(
        dropped.load(Ordering::SeqCst),
        "engine, provider and the sink's handler must not keep each other alive"
    );
}
