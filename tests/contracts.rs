//! The engine's stream contracts: no event before its handle, one order per call, gap-free sequence
//! numbers, and slow consumers told exactly what they lost.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tapir::core::caps::{AddressCaps, LineCaps};
use tapir::core::info::CallInfo;
use tapir::core::media::MediaModes;
use tapir::core::params::MakeCall;
use tapir::core::state::{CallState, CallStateKind as K, DialToneMode};
use tapir::{Engine, Error, Event, OpenOptions, Session};
use tapir_core::{CallId, CallLegId, LineId};
use tapir_provider::{EventSink, NewCall, Provider};
use tapir_tests::{Watcher, numbers, pbx, pbx_with, poll_state};
use tokio::sync::Notify;

/// A provider whose make_call reports the new call and its first states, then waits for the test to let
/// it return — the widest possible window for an event to overtake its handle.
#[derive(Default)]
struct Gated {
    sink: Mutex<Option<EventSink>>,
    release: Notify,
    next: AtomicU64,
    fail_after_report: AtomicBool,
}

impl Gated {
    fn sink(&self) -> EventSink {
        self.sink.lock().unwrap().clone().unwrap()
    }
}

#[async_trait]
impl Provider for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    async fn start(&self, sink: EventSink) -> Result<Vec<LineCaps>, Error> {
        *self.sink.lock().unwrap() = Some(sink);
        Ok(vec![LineCaps {
            name: "gated".into(),
            addresses: vec![AddressCaps::basic("1")],
            media_modes: MediaModes::INTERACTIVE_VOICE,
            dial: Default::default(),
            answer_mode: Default::default(),
        }])
    }
    async fn stop(&self) {}
    async fn make_call(&self, request: MakeCall) -> Result<CallLegId, Error> {
        let leg = CallLegId(self.next.fetch_add(1, Ordering::Relaxed) + 1);
        let sink = self.sink();
        sink.new_call(NewCall {
            leg,
            line: request.line,
            address: request.address,
            state: CallState::DialTone(DialToneMode::Normal),
            info: CallInfo {
                call_id: CallId(leg.0 + 100),
                ..CallInfo::default()
            }
            .into(),
            request: Some(request.request),
        });
        sink.call_state(leg, CallState::Dialing);
        self.release.notified().await;
        if self.fail_after_report.load(Ordering::Relaxed) {
            return Err(Error::OperationFailed {
                reason: "trunk failure".into(),
            });
        }
        sink.call_state(leg, CallState::Proceeding);
        Ok(leg)
    }
    async fn drop_call(&self, leg: CallLegId) -> Result<(), Error> {
        self.sink().call_state(leg, CallState::Idle);
        Ok(())
    }
}

async fn gated_engine() -> (Arc<Gated>, Engine, Session, Session) {
    let gated = Arc::new(Gated::default());
    let engine = Engine::builder()
        .provider_arc(gated.clone())
        .build()
        .await
        .unwrap();
    let creator = engine.logon("creator").await.unwrap();
    let monitor = engine.logon("monitor").await.unwrap();
    monitor
        .open_line(LineId(0), OpenOptions::monitor())
        .await
        .unwrap();
    (gated, engine, creator, monitor)
}

#[tokio::test]
async fn make_call_returns_the_handle_before_any_event_names_it() {
    let (gated, engine, creator, monitor) = gated_engine().await;
    let line = creator
        .open_line(LineId(0), OpenOptions::owner())
        .await
        .unwrap();
    let c = creator.clone();
    let pending = tokio::spawn(async move { c.make_call(line, Some("5")).await });

    // The provider has reported the call and two states; the monitor already sees them…
    let mut wm = Watcher::new(&monitor);
    let m = wm.new_call().await;
    wm.state(m, K::Dialing).await;
    // …but the creator has not been given its handle, so it has heard nothing.
    assert!(creator.try_next_event().is_none());

    gated.release.notify_one();
    let h = pending.await.unwrap().unwrap();
    let mut wc = Watcher::new(&creator);
    wc.drain();
    assert!(matches!(wc.log[0].event, Event::NewCall { call, .. } if call == h));
    assert_eq!(
        wc.states(h),
        vec![
            CallState::DialTone(DialToneMode::Normal),
            CallState::Dialing,
            CallState::Proceeding
        ]
    );
    assert_eq!(wc.log.len(), 4);
    creator.drop_call(h).await.unwrap();
    creator.deallocate(h).unwrap();
    monitor.deallocate(m).unwrap();
    assert_eq!(engine.stats().calls, 0);
}

#[tokio::test]
async fn a_failed_make_call_leaves_no_handle_and_no_live_call() {
    let (gated, engine, creator, monitor) = gated_engine().await;
    gated.fail_after_report.store(true, Ordering::Relaxed);
    let line = creator
        .open_line(LineId(0), OpenOptions::owner())
        .await
        .unwrap();
    let c = creator.clone();
    let pending = tokio::spawn(async move { c.make_call(line, Some("5")).await });
    let mut wm = Watcher::new(&monitor);
    let m = wm.new_call().await;
    gated.release.notify_one();
    assert!(matches!(
        pending.await.unwrap(),
        Err(Error::OperationFailed { .. })
    ));
    assert!(creator.try_next_event().is_none());
    assert!(creator.calls().is_empty());
    // The call had no owner left, so the engine dropped it.
    wm.state(m, K::Idle).await;
    monitor.deallocate(m).unwrap();
    let stats = engine.stats();
    assert_eq!(
        (stats.calls, stats.call_handles, stats.pending_requests),
        (0, 0, 0)
    );
}

/// Many concurrent calls whose far end answers at once, on a multi-threaded runtime, with the events
/// read while the calls are made: every event the readers see names a handle they already had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_before_its_handle_under_concurrency() {
    const N: usize = 300;
    let names: Vec<String> = (0..N).map(|i| format!("{}", 1000 + i)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pbx = pbx_with(&refs).await;
    let opens: Vec<(&str, OpenOptions)> = refs.iter().map(|n| (*n, OpenOptions::owner())).collect();
    let (caller, lines) = pbx.app("caller", &opens).await;
    let mon_opens: Vec<(&str, OpenOptions)> =
        refs.iter().map(|n| (*n, OpenOptions::monitor())).collect();
    let (monitor, _) = pbx.app("monitor", &mon_opens).await;

    let read = |s: &Session| {
        let mut w = Watcher::new(s);
        tokio::spawn(async move {
            for _ in 0..N {
                w.until(|e| {
                    matches!(
                        e,
                        Event::CallState {
                            state: CallState::Idle,
                            ..
                        }
                    )
                })
                .await;
            }
            w
        })
    };
    let (rc, rm) = (read(&caller), read(&monitor));

    let mut tasks = Vec::new();
    for line in lines {
        let s = caller.clone();
        tasks.push(tokio::spawn(async move {
            let h = s
                .make_call(line, Some(numbers::ANSWERS_AT_ONCE))
                .await
                .unwrap();
            poll_state(&s, h, K::Connected).await;
            s.drop_call(h).await.unwrap();
            s.deallocate(h).unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let wc = rc.await.unwrap();
    let wm = rm.await.unwrap();
    assert_eq!(wc.handles().len(), N);
    assert_eq!(wm.handles().len(), N);
    for h in wm.handles().keys() {
        monitor.deallocate(*h).unwrap();
    }
    pbx.assert_empty();
}

/// Every session that holds a leg sees that leg's states in the same order.
#[tokio::test(start_paused = true)]
async fn one_order_per_call_across_sessions() {
    let pbx = pbx().await;
    let (alice, l) = pbx.app("alice", &[("100", OpenOptions::owner())]).await;
    let (bob, _) = pbx.app("bob", &[("200", OpenOptions::owner())]).await;
    let (sup1, _) = pbx
        .app(
            "sup1",
            &[
                ("100", OpenOptions::monitor()),
                ("200", OpenOptions::monitor()),
            ],
        )
        .await;
    let (sup2, _) = pbx.app("sup2", &[("200", OpenOptions::monitor())]).await;
    let mut watchers: Vec<Watcher> = [&alice, &bob, &sup1, &sup2].map(Watcher::new).into();

    let a = alice.make_call(l[0], Some("200")).await.unwrap();
    let b = watchers[1].new_call().await;
    bob.accept(b).await.unwrap();
    bob.answer(b).await.unwrap();
    alice.drop_call(a).await.unwrap();
    bob.drop_call(b).await.unwrap();

    // (call ID, line) identifies a leg across sessions; collect each session's view of each leg.
    let mut views: HashMap<(CallId, LineId), Vec<Vec<CallState>>> = HashMap::new();
    for w in &mut watchers {
        w.drain();
        for (h, call_id) in w.handles() {
            let line = w.session.call_info(h).unwrap().line;
            views.entry((call_id, line)).or_default().push(w.states(h));
        }
    }
    assert_eq!(views.len(), 2, "two legs");
    let mut counts: Vec<usize> = views.values().map(Vec::len).collect();
    counts.sort();
    assert_eq!(
        counts,
        vec![2, 3],
        "alice+sup1 on 100; bob+sup1+sup2 on 200"
    );
    for (leg, seen) in views {
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{leg:?}: {seen:?}");
        assert_eq!(seen[0].last(), Some(&CallState::Idle));
    }
}

/// A session that does not read is told exactly which events it lost, and can catch up from a snapshot.
#[tokio::test(start_paused = true)]
async fn a_slow_session_is_told_what_it_lost() {
    let switch = tapir_simswitch::SimSwitch::builder()
        .extension("100", "Alice")
        .far_end(
            numbers::ANSWERS,
            tapir_simswitch::FarEnd::answers_after_rings(0),
        )
        .build()
        .unwrap();
    let engine = Engine::builder()
        .provider(switch)
        .event_queue_capacity(4)
        .build()
        .await
        .unwrap();
    let s = engine.logon("slow").await.unwrap();
    let l = s.open_line(LineId(0), OpenOptions::owner()).await.unwrap();
    let h = s.make_call(l, Some(numbers::ANSWERS)).await.unwrap();
    poll_state(&s, h, K::Connected).await;

    let mut seqs = Vec::new();
    let mut lost = None;
    while let Some(e) = s.try_next_event() {
        if let Event::EventsLost { first, last } = e.event {
            lost = Some((first, last));
            seqs.extend(first..=last);
        } else {
            seqs.push(e.seq);
        }
    }
    let (first, last) = lost.expect("events were lost");
    assert_eq!(first, 5, "the first four were queued");
    assert_eq!(
        seqs,
        (1..=last).collect::<Vec<_>>(),
        "kept and lost together cover every number once"
    );
    // The snapshot says where things stand.
    assert_eq!(s.calls(), vec![h]);
    assert_eq!(s.call_status(h).unwrap().state.kind(), K::Connected);
}

#[tokio::test(start_paused = true)]
async fn two_reads_waiting_on_one_session_are_both_woken() {
    let (gated, _engine, creator, monitor) = gated_engine().await;
    let line = creator
        .open_line(LineId(0), OpenOptions::owner())
        .await
        .unwrap();
    // Two reads of the same stream (clones of one session) wait before anything happens…
    let reads: Vec<_> = (0..2)
        .map(|_| {
            let m = monitor.clone();
            tokio::spawn(async move { m.next_event().await })
        })
        .collect();
    tokio::task::yield_now().await;
    // …then the provider reports a call: three events for the monitor, pushed back to back, and
    // nothing after them until the test lets make_call finish.
    let c = creator.clone();
    let pending = tokio::spawn(async move { c.make_call(line, Some("5")).await });
    let mut seqs = Vec::new();
    for read in reads {
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .expect("a waiting read was never woken")
            .unwrap()
            .expect("the stream goes on");
        seqs.push(got.seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, vec![1, 2], "each read takes one event, in order");
    let rest = monitor
        .try_next_event()
        .expect("the third event is still queued");
    assert_eq!(rest.seq, 3);
    gated.release.notify_one();
    pending.await.unwrap().unwrap();
}
