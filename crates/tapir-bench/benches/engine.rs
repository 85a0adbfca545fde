//! Micro-benchmarks of the engine (divan): the operation gate, one complete call lifecycle with an owner
//! and N monitors (event fan-out), handle lookup, the bare mechanisms a lifecycle is made of (the
//! baseline the lifecycle is compared with), and a client reading one event. `cargo bench -p
//! tapir-bench`; figures in `docs/benchmarks.md`.
#![allow(missing_docs)]

use std::hint::black_box;

use dashmap::DashMap;
use tapir::core::caps::AddressCaps;
use tapir::core::gate::{self, CallContext};
use tapir::core::gate::{CallOperation, FeatureSet};
use tapir::core::privilege::CallPrivilege;
use tapir::core::state::{CallState, CallStateKind, ConnectedMode};
use tapir::{CallHandle, Engine, Event, LineHandle, OpenOptions, Session};
use tapir_simswitch::{FarEnd, SimSwitch};

fn main() {
    divan::main();
}

fn caps() -> AddressCaps {
    AddressCaps {
        call_features: FeatureSet::ALL,
        max_active_calls: 4,
        max_on_hold: 2,
        ..AddressCaps::basic("100")
    }
}

/// The gate deciding one operation on a connected call (the check every call operation passes).
#[divan::bench]
fn gate_check(bencher: divan::Bencher) {
    let caps = caps();
    let ctx = CallContext::new(CallState::Connected(ConnectedMode::Active));
    bencher.bench_local(|| {
        gate::check(
            black_box(CallOperation::Hold),
            black_box(CallPrivilege::Owner),
            || Ok(()),
            &caps,
            &ctx,
        )
    });
}

/// The features of a connected call (what `call_status` and every API call reply compute).
#[divan::bench]
fn gate_features(bencher: divan::Bencher) {
    let caps = caps();
    let ctx = CallContext::new(CallState::Connected(ConnectedMode::Active));
    bencher.bench_local(|| gate::features(black_box(&caps), black_box(&ctx)));
}

struct Rig {
    rt: tokio::runtime::Runtime,
    owner: Session,
    line: LineHandle,
    _monitors: Vec<Session>,
}

/// An engine with one extension opened by an owner and `monitors` monitor sessions, whose readers
/// deallocate each call when it is idle. The runtime's clock is paused, so the simulated switch's
/// timers (the far end answering "at once" is still a timer, with tokio's 1 ms resolution) cost no
/// waiting: what is measured is the work.
fn rig(monitors: usize) -> Rig {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let (owner, line, monitors) = rt.block_on(async {
        let switch = SimSwitch::builder()
            .extension("100", "Bench")
            .far_end("5550000", FarEnd::answers_after_rings(0))
            .build()
            .expect("switch");
        let engine = Engine::builder()
            .provider(switch)
            .build()
            .await
            .expect("engine");
        let id = engine.lines()[0].id;
        let owner = engine.logon("owner").await.expect("owner");
        let line = owner
            .open_line(id, OpenOptions::owner())
            .await
            .expect("open");
        let mut sessions = Vec::new();
        for m in 0..monitors {
            let s = engine
                .logon(&format!("monitor-{m}"))
                .await
                .expect("monitor");
            s.open_line(id, OpenOptions::monitor()).await.expect("open");
            let reader = s.clone();
            tokio::spawn(async move {
                while let Some(e) = reader.next_event().await {
                    if let Event::CallState { call, state, .. } = e.event
                        && state.kind() == CallStateKind::Idle
                    {
                        let _ = reader.deallocate(call);
                    }
                }
            });
            sessions.push(s);
        }
        (owner, line, sessions)
    });
    Rig {
        rt,
        owner,
        line,
        _monitors: monitors,
    }
}

async fn lifecycle(owner: &Session, line: LineHandle) -> CallHandle {
    let call = owner.make_call(line, Some("5550000")).await.expect("make");
    while let Some(e) = owner.next_event().await {
        if let Event::CallState { call: c, state, .. } = e.event
            && c == call
            && state.kind() == CallStateKind::Connected
        {
            break;
        }
    }
    owner.drop_call(call).await.expect("drop");
    owner.deallocate(call).expect("deallocate");
    while owner.try_next_event().is_some() {}
    call
}

/// One complete call lifecycle (make → connected → drop → idle → deallocate) with an owner and N
/// monitors: the event fan-out to N + 1 sessions.
#[divan::bench(args = [1, 4, 16])]
fn lifecycle_with_monitors(bencher: divan::Bencher, monitors: usize) {
    let rig = rig(monitors);
    bencher.bench_local(|| rig.rt.block_on(lifecycle(&rig.owner, rig.line)));
}

/// A client reading one event of the stream (`tapir-client` does this for every event it delivers):
/// the commonest kind, a call's state change, as tapird sends it.
#[divan::bench]
fn client_reads_an_event(bencher: divan::Bencher) {
    let text = r#"{"seq":1234,"type":"call_state","call":"call:00000000000004d2","state":"connected","mode":"active","state_detail":"connected (active)","privilege":"owner"}"#;
    bencher.bench_local(|| tapir_api::StreamMessage::from_json(black_box(text)).map(|_| ()));
}

/// Looking a call handle up in a session (every call operation starts with it).
#[divan::bench]
fn handle_lookup(bencher: divan::Bencher) {
    let rig = rig(0);
    let call = rig.rt.block_on(async {
        rig.owner
            .make_call(rig.line, Some("5550000"))
            .await
            .expect("make")
    });
    bencher.bench_local(|| rig.owner.call_status(black_box(call)).map(|s| s.state));
}

/// The bare mechanisms one owner + monitor lifecycle needs, without the engine: the events it
/// delivers (18 channel hops, measured by tapir-load), four request/reply round trips to the provider
/// (make, drop, and their completions), and the map work for two sessions' handles and the call
/// (inserts, lookups, removals).
#[divan::bench]
fn baseline_bare_mechanisms(bencher: divan::Bencher) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let handles: DashMap<u64, u64> = DashMap::new();
    let calls: DashMap<u64, u64> = DashMap::new();
    let mut key = 0u64;
    bencher.bench_local(|| {
        rt.block_on(async {
            key += 1;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            for i in 0..18 {
                let _ = tx.send(i);
                black_box(rx.recv().await);
            }
            for _ in 0..4 {
                let (otx, orx) = tokio::sync::oneshot::channel::<u64>();
                let _ = otx.send(key);
                black_box(orx.await.ok());
            }
            calls.insert(key, key);
            handles.insert(key * 2, key);
            handles.insert(key * 2 + 1, key);
            for _ in 0..8 {
                black_box(handles.get(&(key * 2)).map(|v| *v));
                black_box(calls.get(&key).map(|v| *v));
            }
            handles.remove(&(key * 2));
            handles.remove(&(key * 2 + 1));
            calls.remove(&key);
        })
    });
}
