//! Consultations and conferences: consult, complete, conference, prepare, join, parties, remove.

use tapir_api::Call;
use tapir_client::Client;

use crate::cli::Global;
use crate::failure::Outcome;
use crate::find::{find_call, one_of, pick_call, pick_conference};
use crate::output::{calls_table, print};

/// `tapir consult`.
pub(crate) async fn consult(
    g: &Global,
    c: &Client,
    number: String,
    call: Option<String>,
    line: Option<String>,
) -> Outcome {
    let held = pick_call(c, call, line, &["connected"], "connected call").await?;
    let consultation = c.setup_transfer(&held).await?;
    let consultation = c.dial(&consultation.call, &number).await?;
    print(g, &consultation, || {
        calls_table(std::slice::from_ref(&consultation))
    })
}

/// `tapir complete`.
pub(crate) async fn complete(
    g: &Global,
    c: &Client,
    held: String,
    consultation: String,
    conference: bool,
) -> Outcome {
    let held = find_call(c, &held).await?;
    let consultation = find_call(c, &consultation).await?;
    let call = if conference {
        c.complete_conference(&held, &consultation).await?
    } else {
        c.complete_transfer(&held, &consultation).await?
    };
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}

/// `tapir conference`.
pub(crate) async fn conference(
    g: &Global,
    c: &Client,
    number: Option<String>,
    call: Option<String>,
    line: Option<String>,
) -> Outcome {
    let call = pick_call(c, call, line, &["connected"], "connected call").await?;
    let mut setup = c.setup_conference(&call).await?;
    if let Some(n) = number {
        setup.consultation = c.dial(&setup.consultation.call, &n).await?;
    }
    print(g, &setup, || {
        calls_table(&[setup.conference.clone(), setup.consultation.clone()])
    })
}

/// `tapir prepare`.
pub(crate) async fn prepare(
    g: &Global,
    c: &Client,
    number: String,
    conference: Option<String>,
    line: Option<String>,
) -> Outcome {
    let conference = pick_conference(c, conference, line, &["connected"]).await?;
    let consultation = c.prepare_add_to_conference(&conference).await?;
    let consultation = c.dial(&consultation.call, &number).await?;
    print(g, &consultation, || {
        calls_table(std::slice::from_ref(&consultation))
    })
}

/// `tapir join`.
pub(crate) async fn join(
    g: &Global,
    c: &Client,
    conference: Option<String>,
    consultation: Option<String>,
    line: Option<String>,
) -> Outcome {
    let conference = pick_conference(c, conference, line, &["on_hold_pending_conference"]).await?;
    let consultation = match consultation {
        Some(k) => find_call(c, &k).await?,
        None => {
            // The conference line's connected call that is not yet one of its calls.
            let of = c.call(&conference).await?;
            let members = c.conference_calls(&conference).await?;
            let candidates: Vec<Call> = c
                .calls()
                .await?
                .into_iter()
                .filter(|k| {
                    k.line == of.line
                        && k.state == "connected"
                        && members.iter().all(|m| m.call != k.call)
                })
                .collect();
            one_of(candidates, "answered consultation call")?
        }
    };
    c.add_to_conference(&conference, &consultation).await?;
    let calls = c.conference_calls(&conference).await?;
    print(g, &calls, || calls_table(&calls))
}

/// `tapir parties`.
pub(crate) async fn parties(
    g: &Global,
    c: &Client,
    call: Option<String>,
    line: Option<String>,
) -> Outcome {
    let call = match call {
        Some(h) => find_call(c, &h).await?,
        None => {
            pick_conference(
                c,
                None,
                line,
                &["connected", "on_hold", "on_hold_pending_conference"],
            )
            .await?
        }
    };
    let calls = c.conference_calls(&call).await?;
    print(g, &calls, || calls_table(&calls))
}

/// `tapir remove`.
pub(crate) async fn remove(g: &Global, c: &Client, call: String) -> Outcome {
    let call = c
        .remove_from_conference(&find_call(c, &call).await?)
        .await?;
    print(g, &call, || calls_table(std::slice::from_ref(&call)))
}
