//! A three-way call: Alice calls Bob, turns the call into a conference, adds Carol, lists the parties,
//! removes Bob again, and ends the conference.
//!
//! Run it with `cargo run --example conference`.

use std::time::Duration;

use tapir::core::state::CallStateKind;
use tapir::{CallHandle, Engine, Event, OpenOptions, Session};
use tapir_simswitch::SimSwitch;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let switch = SimSwitch::builder()
        .extension("100", "Alice")
        .extension("200", "Bob")
        .extension("300", "Carol")
        .ring_period(Duration::from_millis(500))
        .build()?;
    let engine = Engine::builder().provider(switch).build().await?;
    let lines = engine.lines();
    let alice = engine.logon("alice").await?;
    let others = engine.logon("bob-and-carol").await?;
    let line = alice.open_line(lines[0].id, OpenOptions::owner()).await?;
    for l in &lines[1..] {
        others.open_line(l.id, OpenOptions::owner()).await?;
    }
    let answering = tokio::spawn(answer_everything(others.clone()));

    let bob = alice.make_call(line, Some("200")).await?;
    wait_for(&alice, bob, CallStateKind::Connected).await;
    let (conference, carol) = alice.setup_conference(bob).await?;
    println!(
        "conference set up; Bob is {}",
        alice.call_status(bob)?.state
    );
    alice.dial(carol, "300").await?;
    wait_for(&alice, carol, CallStateKind::Connected).await;
    alice.add_to_conference(conference, carol).await?;
    println!(
        "Carol added; conference has {} calls: {:?}",
        alice.conference_calls(conference)?.len(),
        alice.conference_calls(conference)?
    );
    alice.remove_from_conference(bob).await?;
    println!(
        "Bob removed; Bob's call is {}",
        alice.call_status(bob)?.state
    );
    alice.drop_call(conference).await?;
    println!(
        "conference dropped; Carol's call is {}",
        alice.call_status(carol)?.state
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    alice.logoff().await;
    others.logoff().await;
    answering.await?;
    println!("engine holds {:?}", engine.stats());
    Ok(())
}

async fn wait_for(session: &Session, call: CallHandle, kind: CallStateKind) {
    while session.call_status(call).map(|s| s.state.kind()) != Ok(kind) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn answer_everything(session: Session) {
    while let Some(e) = session.next_event().await {
        if let Event::CallState { call, state, .. } = e.event {
            match state.kind() {
                CallStateKind::Offering => {
                    let _ = session.answer(call).await;
                }
                CallStateKind::Disconnected => {
                    let _ = session.drop_call(call).await;
                }
                CallStateKind::Idle => {
                    let _ = session.deallocate(call);
                }
                _ => {}
            }
        }
    }
}
