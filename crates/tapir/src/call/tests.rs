//! The call record's rules, driven directly: no runtime, no provider, time made up.

use std::sync::Arc;
use std::time::Duration;

use tapir_core::caps::{AddressCaps, LineCaps};
use tapir_core::cdr::Disposition;
use tapir_core::gate::{CallOperation, CallRole};
use tapir_core::info::{CallInfo, InfoChange, PartyId};
use tapir_core::media::MediaModes;
use tapir_core::privilege::CallPrivilege;
use tapir_core::state::{
    CallState, CallStateKind, ConnectedMode, DialToneMode, DisconnectReason, OfferingMode,
};
use tapir_core::{AddressId, CallId, CallLegId, Error, LineId, ProviderId};
use tokio::time::Instant;

use super::*;
use crate::detail::Clock;
use crate::event::Event;
use crate::handles::{CallHandle, HandleMint, LineHandle};
use crate::inbox::Inbox;
use crate::line::LineSlot;
use crate::sync::lock;

const CONNECTED: CallState = CallState::Connected(ConnectedMode::Active);
const OFFERING: CallState = CallState::Offering(OfferingMode::Active);

/// A session as a call sees it, with one reader whose events the test reads.
struct Sess {
    inbox: Arc<Inbox>,
    index: CallIndex,
    line: LineHandle,
}

impl Sess {
    fn new(app: &str) -> Self {
        let inbox = Arc::new(Inbox::new(app, false, 100));
        lock(&inbox.queue).add_reader(1, Arc::new(tokio::sync::Notify::new()));
        Self {
            inbox,
            index: CallIndex::default(),
            line: LineHandle(7),
        }
    }

    fn events(&self) -> Vec<Event> {
        let mut q = lock(&self.inbox.queue);
        std::iter::from_fn(|| q.pop(1).map(|e| e.event)).collect()
    }

    fn end(&self) {
        lock(&self.inbox.queue).end();
    }

    fn holder(&self, handle: u64, privilege: CallPrivilege, published: bool) -> NewHolder<'_> {
        NewHolder {
            inbox: self.inbox.clone(),
            index: &self.index,
            handle: CallHandle(handle),
            line: self.line,
            privilege,
            published,
        }
    }
}

fn line() -> Arc<LineSlot> {
    let mut a = AddressCaps::basic("100");
    a.call_features = a
        .call_features
        .with(CallOperation::Hold)
        .with(CallOperation::Unhold)
        .with(CallOperation::RemoveFromConference);
    a.max_on_hold = 1;
    a.max_conference = 3;
    a.max_active_calls = 2;
    let caps = LineCaps {
        name: "Extension 100".into(),
        addresses: vec![a],
        media_modes: MediaModes::INTERACTIVE_VOICE,
        dial: Default::default(),
        answer_mode: Default::default(),
    };
    Arc::new(LineSlot::new(LineId(0), ProviderId(0), LineId(0), caps))
}

fn call(line: &Arc<LineSlot>, leg: u64, state: CallState, now: Instant) -> Arc<CallEntry> {
    let info = CallInfo {
        call_id: CallId(leg + 1000),
        media_mode: MediaModes::INTERACTIVE_VOICE,
        caller: PartyId::named("5551234", "Erin"),
        ..CallInfo::default()
    };
    CallEntry::new(
        (ProviderId(0), CallLegId(leg)),
        line.clone(),
        AddressId(0),
        state,
        Arc::new(info),
        true,
        || now,
    )
}

/// Gives a call that has just appeared (offered, made by nobody here) its first holders.
fn offer(c: &Arc<CallEntry>, holders: Vec<NewHolder<'_>>) {
    let follow = c.admit(|| {}, holders, false);
    assert!(!follow.drop_orphan);
}

fn states(events: &[Event]) -> Vec<CallStateKind> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CallState { state, .. } => Some(state.kind()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_state_kind_reads_back_from_the_code_a_call_entry_keeps() {
    for kind in CallStateKind::ALL {
        let code = kind_code(kind);
        assert_eq!(CallStateKind::ALL.get(usize::from(code)), Some(&kind));
    }
}

#[test]
fn a_new_call_is_announced_to_each_holder_before_anything_else_names_it() {
    let t0 = Instant::now();
    let (owner, monitor) = (Sess::new("owner"), Sess::new("monitor"));
    let line = line();
    let c = call(&line, 1, OFFERING, t0);
    let follow = c.admit(
        || {},
        vec![
            owner.holder(11, CallPrivilege::Owner, true),
            monitor.holder(21, CallPrivilege::Monitor, true),
        ],
        false,
    );
    assert!(!follow.drop_orphan);
    for (s, handle, privilege) in [
        (&owner, 11, CallPrivilege::Owner),
        (&monitor, 21, CallPrivilege::Monitor),
    ] {
        let events = s.events();
        assert!(
            matches!(events[..], [Event::NewCall { call, privilege: p, .. }, Event::CallState { call: c2, .. }]
                if call == CallHandle(handle) && c2 == call && p == privilege),
            "{events:?}"
        );
        assert!(s.index.get(CallHandle(handle)).is_some());
    }
    assert_eq!(line.usage(AddressId(0)).active, 1);
}

#[test]
fn a_call_being_made_is_held_back_from_its_session_until_published() {
    let t0 = Instant::now();
    let me = Sess::new("dialer");
    let line = line();
    let c = call(&line, 1, CallState::DialTone(DialToneMode::Normal), t0);
    let _ = c.admit(|| {}, vec![me.holder(5, CallPrivilege::Owner, false)], true);
    let clock = Clock::now();
    let _ = c.apply_state(CallState::Dialing, || t0, &clock);
    let _ = c.apply_state(CallState::Proceeding, || t0, &clock);
    assert!(me.events().is_empty(), "nothing before the handle is given");
    c.publish(&me.inbox, CallHandle(5)).expect("published");
    let events = me.events();
    assert!(matches!(events[0], Event::NewCall { .. }), "{events:?}");
    assert_eq!(
        states(&events),
        [
            CallStateKind::DialTone,
            CallStateKind::Dialing,
            CallStateKind::Proceeding
        ]
    );
}

#[test]
fn a_session_that_has_ended_gets_no_handle_and_a_call_made_for_it_is_an_orphan() {
    let t0 = Instant::now();
    let me = Sess::new("dialer");
    me.end();
    let line = line();
    let c = call(&line, 1, CallState::DialTone(DialToneMode::Normal), t0);
    let follow = c.admit(|| {}, vec![me.holder(5, CallPrivilege::Owner, false)], true);
    assert!(follow.drop_orphan, "made for a session that ended: drop it");
    assert!(me.index.get(CallHandle(5)).is_none());
    assert!(matches!(
        c.publish(&me.inbox, CallHandle(5)),
        Err(Error::SessionEnded)
    ));
}

#[test]
fn states_reach_every_holder_and_reports_the_table_forbids_change_nothing() {
    let t0 = Instant::now();
    let clock = Clock::now();
    let (owner, monitor) = (Sess::new("owner"), Sess::new("monitor"));
    let line = line();
    let c = call(&line, 1, OFFERING, t0);
    offer(
        &c,
        vec![
            owner.holder(11, CallPrivilege::Owner, true),
            monitor.holder(21, CallPrivilege::Monitor, true),
        ],
    );
    owner.events();
    monitor.events();
    assert!(matches!(
        c.apply_state(CONNECTED, || t0, &clock),
        Ok(Some(_))
    ));
    assert!(
        matches!(c.apply_state(CONNECTED, || t0, &clock), Ok(None)),
        "the same state again"
    );
    assert_eq!(
        c.apply_state(OFFERING, || t0, &clock).err(),
        Some(Refusal::Transition),
        "connected → offering is not in the table"
    );
    assert_eq!(c.kind(), CallStateKind::Connected);
    for s in [&owner, &monitor] {
        assert_eq!(states(&s.events()), [CallStateKind::Connected]);
    }
}

#[test]
fn the_far_end_clearing_a_call_nobody_owns_makes_it_the_orphan_policys() {
    let t0 = Instant::now();
    let clock = Clock::now();
    let monitor = Sess::new("monitor");
    let line = line();
    let c = call(&line, 1, CONNECTED, t0);
    offer(&c, vec![monitor.holder(21, CallPrivilege::Monitor, true)]);
    let follow = c
        .apply_state(
            CallState::Disconnected(DisconnectReason::Normal),
            || t0,
            &clock,
        )
        .expect("applied")
        .expect("changed");
    assert!(follow.drop_orphan);
    assert!(!follow.forget, "a holder still holds it");
    let follow = c
        .apply_state(CallState::Idle, || t0, &clock)
        .expect("applied")
        .expect("changed");
    assert!(!follow.drop_orphan && !follow.forget);
    let follow = c.release(&monitor.inbox, &monitor.index, CallHandle(21));
    assert!(follow.forget, "idle, and nobody holds it");
    assert_eq!(
        c.apply_state(CallState::Idle, || t0, &clock).err(),
        Some(Refusal::AfterIdle),
        "a forgotten call takes no more reports"
    );
}

#[test]
fn the_sole_owner_of_a_live_call_cannot_let_it_go_and_others_hear_of_privilege_changes() {
    let t0 = Instant::now();
    let clock = Clock::now();
    let (a, b) = (Sess::new("a"), Sess::new("b"));
    let line = line();
    let c = call(&line, 1, CONNECTED, t0);
    offer(
        &c,
        vec![
            a.holder(1, CallPrivilege::Owner, true),
            b.holder(2, CallPrivilege::Monitor, true),
        ],
    );
    a.events();
    b.events();
    assert!(c.sole_live_owner(&a.inbox, CallHandle(1)));
    assert!(matches!(
        c.set_privilege(&a.inbox, CallHandle(1), CallPrivilege::Monitor),
        Err(Error::InvalidCallState { .. })
    ));
    // B raises itself; now A may step down, and each hears of the other's change.
    c.set_privilege(&b.inbox, CallHandle(2), CallPrivilege::Owner)
        .expect("raised");
    assert!(!c.sole_live_owner(&a.inbox, CallHandle(1)));
    assert!(matches!(
        a.events()[..],
        [Event::CallInfo { changed, .. }] if changed.contains(InfoChange::NUM_OWNERS_INCREASED)
    ));
    c.set_privilege(&a.inbox, CallHandle(1), CallPrivilege::Monitor)
        .expect("stepped down");
    assert!(matches!(
        b.events()[..],
        [Event::CallInfo { changed, .. }] if changed.contains(InfoChange::NUM_OWNERS_DECREASED)
    ));
    // Another session's handle of the same value is no handle here.
    assert!(matches!(
        c.status(&b.inbox, CallHandle(1)),
        Err(Error::InvalidCallHandle)
    ));
    let _ = c.apply_state(CallState::Idle, || t0, &clock);
    assert!(
        !c.sole_live_owner(&b.inbox, CallHandle(2)),
        "an idle call is nobody's to keep"
    );
}

#[test]
fn hand_off_raises_a_monitor_or_gives_a_new_owner_handle_announced_first() {
    let t0 = Instant::now();
    let mint = HandleMint::new();
    let (a, b, c2) = (Sess::new("a"), Sess::new("b"), Sess::new("c"));
    let line = line();
    let c = call(&line, 1, CONNECTED, t0);
    offer(
        &c,
        vec![
            a.holder(1, CallPrivilege::Owner, true),
            b.holder(2, CallPrivilege::Monitor, true),
        ],
    );
    a.events();
    b.events();
    c.make_owner(&b.inbox, &b.index, b.line, &mint);
    assert!(matches!(
        b.events()[..],
        [Event::CallState {
            privilege: CallPrivilege::Owner,
            ..
        }]
    ));
    c.make_owner(&c2.inbox, &c2.index, c2.line, &mint);
    let events = c2.events();
    assert!(
        matches!(events[..], [Event::NewCall { privilege: CallPrivilege::Owner, call, .. }, Event::CallState { call: s, .. }] if s == call),
        "{events:?}"
    );
    assert_eq!(
        c.status(&a.inbox, CallHandle(1)).map(|s| s.num_owners),
        Ok(3)
    );
}

#[test]
fn a_monitor_reads_only_the_features_a_monitor_may_use() {
    let t0 = Instant::now();
    let (a, b) = (Sess::new("a"), Sess::new("b"));
    let line = line();
    let c = call(&line, 1, CONNECTED, t0);
    offer(
        &c,
        vec![
            a.holder(1, CallPrivilege::Owner, true),
            b.holder(2, CallPrivilege::Monitor, true),
        ],
    );
    let owner = c.status(&a.inbox, CallHandle(1)).expect("status").features;
    let monitor = c.status(&b.inbox, CallHandle(2)).expect("status").features;
    assert!(owner.contains(CallOperation::Hold));
    assert!(!monitor.contains(CallOperation::Hold));
    assert!(matches!(
        c.authorize(&b.inbox, CallHandle(2), CallOperation::Hold, |_, _| Ok(())),
        Err(Error::NotOwner)
    ));
    assert!(
        c.authorize(&a.inbox, CallHandle(1), CallOperation::Hold, |_, _| Ok(()))
            .is_ok()
    );
}

#[test]
fn a_party_that_hangs_up_leaves_its_conference_and_the_last_added_moves_back() {
    let t0 = Instant::now();
    let clock = Clock::now();
    let line = line();
    let parent = call(&line, 1, CallState::OnHoldPendingConference, t0);
    let (p1, p2) = (
        call(&line, 2, CallState::Conferenced, t0),
        call(&line, 3, CONNECTED, t0),
    );
    CallEntry::join_conference(&parent, &p1);
    CallEntry::pair_consultation(&parent, &p2, true);
    assert!(p2.is_consultation());
    CallEntry::join_conference(&parent, &p2);
    assert_eq!(parent.role(), CallRole::ConferenceParent { parties: 2 });
    assert_eq!(p1.role(), CallRole::ConferenceParty { last_added: false });
    assert_eq!(p2.role(), CallRole::ConferenceParty { last_added: true });
    assert!(!p2.is_consultation(), "joined: a consultation no more");
    let follow = p2
        .apply_state(
            CallState::Disconnected(DisconnectReason::Normal),
            || t0,
            &clock,
        )
        .expect("applied")
        .expect("changed");
    let left = follow.left_conference.expect("it left the conference");
    assert!(Arc::ptr_eq(&left, &parent));
    CallEntry::remove_party(&left, &p2);
    assert_eq!(parent.party_count(), 1);
    assert_eq!(parent.role(), CallRole::ConferenceParent { parties: 1 });
    assert_eq!(p1.role(), CallRole::ConferenceParty { last_added: true });
    assert_eq!(p2.role(), CallRole::Plain);
}

#[test]
fn consultation_partners_name_each_other_while_both_live() {
    let t0 = Instant::now();
    let clock = Clock::now();
    let me = Sess::new("me");
    let line = line();
    let original = call(&line, 1, CallState::OnHoldPendingTransfer, t0);
    let consult = call(&line, 2, CallState::DialTone(DialToneMode::Normal), t0);
    for (c, h) in [(&original, 1), (&consult, 2)] {
        offer(c, vec![me.holder(h, CallPrivilege::Owner, true)]);
    }
    CallEntry::pair_consultation(&original, &consult, false);
    let view = |c: &Arc<CallEntry>, h| c.info_view(&me.inbox, CallHandle(h)).expect("view");
    assert_eq!(view(&original, 1).consultation_partner, Some(CallId(1002)));
    assert_eq!(view(&consult, 2).consultation_partner, Some(CallId(1001)));
    let _ = consult.apply_state(CallState::Idle, || t0, &clock);
    assert_eq!(view(&original, 1).consultation_partner, None);
}

#[test]
fn the_detail_record_is_finished_when_the_call_goes_idle_with_times_as_fed_in() {
    let t0 = Instant::now();
    let clock = Clock::now();
    let me = Sess::new("softphone");
    let line = line();
    let c = call(&line, 1, OFFERING, t0);
    offer(&c, vec![me.holder(1, CallPrivilege::Owner, true)]);
    let answered = t0 + Duration::from_secs(4);
    let held = answered + Duration::from_secs(10);
    let ended = held + Duration::from_secs(5);
    assert!(
        c.apply_state(CONNECTED, || answered, &clock)
            .expect("applied")
            .expect("changed")
            .record
            .is_none()
    );
    let _ = c.apply_state(CallState::OnHold, || held, &clock);
    c.intend(Some(Disposition::Transferred));
    let follow = c
        .apply_state(CallState::Idle, || ended, &clock)
        .expect("applied")
        .expect("changed");
    let record = follow.record.expect("a record when idle");
    assert_eq!(record.ringing, Duration::from_secs(4));
    assert_eq!(record.talking, Duration::from_secs(10));
    assert_eq!(record.on_hold, Duration::from_secs(5));
    assert_eq!(record.disposition, Disposition::Transferred);
    assert_eq!(record.owners, ["softphone"]);
    assert_eq!(record.line_name, "Extension 100");
}

#[test]
fn new_information_reaches_holders_as_the_fields_that_changed() {
    let t0 = Instant::now();
    let me = Sess::new("me");
    let line = line();
    let c = call(&line, 1, OFFERING, t0);
    offer(&c, vec![me.holder(1, CallPrivilege::Owner, true)]);
    me.events();
    let mut info = CallInfo::clone(&c.info_view(&me.inbox, CallHandle(1)).expect("view").info);
    assert_eq!(c.apply_info(Arc::new(info.clone())), Ok(()));
    assert!(me.events().is_empty(), "nothing changed");
    info.connected = PartyId::named("2002", "Bob");
    assert_eq!(c.apply_info(Arc::new(info)), Ok(()));
    assert!(matches!(
        me.events()[..],
        [Event::CallInfo { changed, .. }] if changed.contains(InfoChange::CONNECTED_ID)
    ));
}
