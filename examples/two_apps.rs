//! Two applications on one engine: Alice's softphone calls extension 200 through the simulated PBX, Bob's
//! softphone answers, both print their events, and Alice hangs up after a few seconds of talk.
//!
//! Run it with `cargo run --example two_apps`. Set `TAPIR_LOG=debug` to see the engine's per-call
//! tracing spans as well.

use std::time::Duration;

use tapir::core::state::CallStateKind;
use tapir::{Engine, Event, OpenOptions, Session};
use tapir_simswitch::SimSwitch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(level) = std::env::var("TAPIR_LOG") {
        let level: tracing::Level = level.parse()?;
        tracing_subscriber::fmt().with_max_level(level).init();
    }

    // A small office: two extensions; phones ring once a second so the demo does not drag.
    let switch = SimSwitch::builder()
        .extension("100", "Alice")
        .extension("200", "Bob")
        .ring_period(Duration::from_secs(1))
        .build()?;
    let engine = Engine::builder().provider(switch).build().await?;

    for line in engine.lines() {
        println!("{}: {} via {}", line.id, line.caps.name, line.provider_name);
    }

    let alice = engine.logon("alice-softphone").await?;
    let bob = engine.logon("bob-softphone").await?;
    let alice_line = alice
        .open_line(engine.lines()[0].id, OpenOptions::owner())
        .await?;
    bob.open_line(engine.lines()[1].id, OpenOptions::owner())
        .await?;

    // Bob answers the first call offered to him after two seconds of ringing, and hangs up his side
    // once the far end has.
    let bob_task = tokio::spawn(answer_one_call(bob.clone()));
    let alice_events = tokio::spawn(print_events(alice.clone(), "alice"));

    let call = alice.make_call(alice_line, Some("200")).await?;
    println!("[alice] dialled 200, handle {call}");
    loop {
        let status = alice.call_status(call)?;
        if status.state.kind() == CallStateKind::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = alice.call_info(call)?;
    println!(
        "[alice] talking to {} (call ID {})",
        info.info.connected.name.as_deref().unwrap_or("?"),
        info.call_id()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    alice.drop_call(call).await?;
    println!("[alice] hung up");
    alice.deallocate(call)?;

    bob_task.await??;
    alice.logoff().await;
    alice_events.await?;
    bob.logoff().await;
    println!("engine holds {:?}", engine.stats());
    engine.shutdown().await;
    Ok(())
}

async fn print_events(session: Session, who: &'static str) {
    while let Some(e) = session.next_event().await {
        println!("[{who}] #{:<3} {:?}", e.seq, e.event);
    }
}

async fn answer_one_call(bob: Session) -> Result<(), tapir::Error> {
    while let Some(e) = bob.next_event().await {
        println!("[bob]   #{:<3} {:?}", e.seq, e.event);
        if let Event::CallState { call, state, .. } = e.event {
            match state.kind() {
                CallStateKind::Offering => {
                    let from = bob.call_info(call)?.info.caller;
                    println!(
                        "[bob]   {} is calling; answering in two seconds",
                        from.name.as_deref().unwrap_or("someone")
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    bob.answer(call).await?;
                }
                CallStateKind::Disconnected => bob.drop_call(call).await?,
                CallStateKind::Idle => {
                    bob.deallocate(call)?;
                    return Ok(());
                }
                _ => {}
            }
        }
    }
    Ok(())
}
