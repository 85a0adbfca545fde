//! A receptionist takes a call from outside and hands it to a colleague two ways: first with a
//! consultation transfer (she speaks to Bob before putting the caller through), then — when the caller
//! rings again — with a blind transfer.
//!
//! Run it with `cargo run --example transfer`.

use std::time::Duration;

use tapir::core::params::TransferMode;
use tapir::core::state::CallStateKind;
use tapir::{CallHandle, Engine, Event, OpenOptions, Session};
use tapir_simswitch::{CallerId, RingIn, SimSwitch};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let switch = SimSwitch::builder()
        .extension("100", "Reception")
        .extension("200", "Bob")
        .ring_period(Duration::from_millis(500))
        .build()?;
    let engine = Engine::builder().provider(switch.clone()).build().await?;
    let reception = engine.logon("reception").await?;
    let bob = engine.logon("bob").await?;
    reception
        .open_line(engine.lines()[0].id, OpenOptions::owner())
        .await?;
    bob.open_line(engine.lines()[1].id, OpenOptions::owner())
        .await?;
    let bob_task = tokio::spawn(answer_everything(bob.clone(), "bob"));

    // 1. Consultation transfer.
    let caller = switch.ring_in(RingIn::new("100", CallerId::named("+15550100", "Carol")))?;
    let call = offered(&reception).await;
    reception.answer(call).await?;
    println!("[reception] answered Carol; consulting Bob");
    let consult = reception.setup_transfer(call).await?;
    reception.dial(consult, "200").await?;
    wait_for(&reception, consult, CallStateKind::Connected).await;
    println!("[reception] Bob agreed; completing the transfer");
    reception
        .complete_transfer(call, consult, TransferMode::Transfer)
        .await?;
    println!(
        "[reception] my calls are now {} and {}",
        reception.call_status(call)?.state,
        reception.call_status(consult)?.state
    );
    for h in [call, consult] {
        reception.deallocate(h)?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    caller.hang_up();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 2. Blind transfer.
    let caller = switch.ring_in(RingIn::new("100", CallerId::named("+15550100", "Carol")))?;
    let call = offered(&reception).await;
    reception.answer(call).await?;
    reception.blind_transfer(call, "200").await?;
    println!("[reception] blind-transferred Carol to 200");
    reception.deallocate(call)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    caller.hang_up();
    tokio::time::sleep(Duration::from_millis(200)).await;

    bob.logoff().await;
    bob_task.await?;
    reception.logoff().await;
    println!("engine holds {:?}", engine.stats());
    Ok(())
}

/// Waits for the next call offered to `session`.
async fn offered(session: &Session) -> CallHandle {
    while let Some(e) = session.next_event().await {
        if let Event::CallState { call, state, .. } = e.event
            && state.kind() == CallStateKind::Offering
        {
            return call;
        }
    }
    panic!("the session ended");
}

async fn wait_for(session: &Session, call: CallHandle, kind: CallStateKind) {
    while session.call_status(call).map(|s| s.state.kind()) != Ok(kind) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers every offered call, prints who it is from and why, and cleans up after hang-ups.
async fn answer_everything(session: Session, who: &'static str) {
    while let Some(e) = session.next_event().await {
        let Event::CallState { call, state, .. } = e.event else {
            continue;
        };
        match state.kind() {
            CallStateKind::Offering => {
                if let Ok(info) = session.call_info(call) {
                    println!(
                        "[{who}] call from {} ({:?}, reason {:?})",
                        info.info.caller.name.as_deref().unwrap_or("?"),
                        info.info.caller.number.as_deref().unwrap_or("?"),
                        info.info.reason
                    );
                }
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
