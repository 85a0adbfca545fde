//! Park and pickup in a small office: Bob parks a caller and Carol retrieves it from another desk; then a
//! call rings at Bob's desk and Carol, in the same pickup group, picks it up.
//!
//! Run it with `cargo run --example park_pickup`.

use std::time::Duration;

use tapir::core::params::{ParkMode, PickupTarget};
use tapir::core::state::CallStateKind;
use tapir::{CallHandle, Engine, Event, LineEvent, OpenOptions, Session};
use tapir_simswitch::{CallerId, RingIn, SimSwitch};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let switch = SimSwitch::builder()
        .extension("200", "Bob")
        .extension("300", "Carol")
        .pickup_group("sales", ["200", "300"])
        .ring_period(Duration::from_millis(500))
        .build()?;
    let engine = Engine::builder().provider(switch.clone()).build().await?;
    let lines = engine.lines();
    let bob = engine.logon("bob").await?;
    let carol = engine.logon("carol").await?;
    bob.open_line(lines[0].id, OpenOptions::owner()).await?;
    let carol_line = carol.open_line(lines[1].id, OpenOptions::owner()).await?;

    // Park: Bob answers, parks the caller in the first free orbit, Carol retrieves it.
    let caller = switch.ring_in(RingIn::new("200", CallerId::named("+15550100", "Dave")))?;
    let call = offered(&bob).await;
    bob.answer(call).await?;
    let orbit = bob.park(call, ParkMode::NonDirected).await?;
    println!("[bob]   parked Dave in orbit {orbit}");
    let retrieved = carol.unpark(carol_line, &orbit).await?;
    let info = carol.call_info(retrieved)?;
    println!(
        "[carol] retrieved {} from {orbit} (reason {:?}); call is {}",
        info.info.caller.name.as_deref().unwrap_or("?"),
        info.info.reason,
        carol.call_status(retrieved)?.state
    );
    while let Some(e) = bob.try_next_event() {
        if let Event::Line {
            event: LineEvent::Parked { .. } | LineEvent::Unparked { .. },
            ..
        } = e.event
        {
            println!("[bob]   {:?}", e.event);
        }
    }
    caller.hang_up();
    carol.drop_call(retrieved).await?;
    carol.deallocate(retrieved)?;
    bob.deallocate(call)?;

    // Pickup: a call rings at Bob's desk; Carol picks it up for the group.
    let caller = switch.ring_in(RingIn::new("200", CallerId::named("+15550199", "Erin")))?;
    let ringing = offered(&bob).await;
    let picked = carol
        .pickup(carol_line, PickupTarget::Group("sales".into()))
        .await?;
    println!(
        "[carol] picked up {} (reason {:?})",
        carol
            .call_info(picked)?
            .info
            .caller
            .name
            .as_deref()
            .unwrap_or("?"),
        carol.call_info(picked)?.info.reason
    );
    wait_for(&bob, ringing, CallStateKind::Idle).await;
    println!(
        "[bob]   the call that rang here ended: {:?}",
        bob.call_status(ringing)?.state
    );
    caller.hang_up();
    carol.drop_call(picked).await?;

    bob.logoff().await;
    carol.logoff().await;
    println!("engine holds {:?}", engine.stats());
    Ok(())
}

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
