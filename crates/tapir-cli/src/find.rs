//! Finding what a command names: a call by handle (or its start), a line by ID, name or number, the
//! one call or conference a command means when it names none.

use tapir_api::Call;
use tapir_client::Client;

use crate::failure::{Failure, not_found, usage};
use crate::output::short;

/// The handle of a call of this log-on: the full handle, or a unique start of its hex digits.
pub(crate) async fn find_call(c: &Client, given: &str) -> Result<String, Failure> {
    let want = given
        .strip_prefix("call:")
        .unwrap_or(given)
        .to_ascii_lowercase();
    if want.is_empty() || !want.chars().all(|ch| ch.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "{given:?} is not a call handle (call:HEX, or the start of the HEX)"
        )));
    }
    if want.len() == 16 {
        return Ok(format!("call:{want}"));
    }
    let calls = c.calls().await?;
    let matching: Vec<&Call> = calls
        .iter()
        .filter(|c| c.call.trim_start_matches("call:").starts_with(&want))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.call.clone()),
        [] => Err(not_found(format!("no call {given} in this log-on"))),
        _ => Err(usage(format!(
            "{given} matches {} calls; give more digits",
            matching.len()
        ))),
    }
}

/// The line ID for an ID, a name or an address number.
pub(crate) async fn line_id(c: &Client, given: &str) -> Result<u32, Failure> {
    let lines = c.lines().await?;
    lines
        .iter()
        .find(|l| l.name == given || l.addresses.iter().any(|a| a == given))
        .or_else(|| {
            given
                .parse::<u32>()
                .ok()
                .and_then(|id| lines.iter().find(|l| l.id == id))
        })
        .map(|l| l.id)
        .ok_or_else(|| not_found(format!("no line {given:?} in this log-on's profile")))
}

/// The call given, or else the one call in one of `states` (on `line`, if given).
pub(crate) async fn pick_call(
    c: &Client,
    given: Option<String>,
    line: Option<String>,
    states: &[&str],
    what: &str,
) -> Result<String, Failure> {
    if let Some(h) = given {
        return find_call(c, &h).await;
    }
    let line = line_filter(c, line).await?;
    let candidates: Vec<Call> = c
        .calls()
        .await?
        .into_iter()
        .filter(|k| states.contains(&k.state.as_str()) && line.is_none_or(|l| k.line == l))
        .collect();
    one_of(candidates, what)
}

/// The conference given, or the one conference (a call whose conference it heads) in one of
/// `states`, on `line` if given.
pub(crate) async fn pick_conference(
    c: &Client,
    given: Option<String>,
    line: Option<String>,
    states: &[&str],
) -> Result<String, Failure> {
    if let Some(h) = given {
        return find_call(c, &h).await;
    }
    let line = line_filter(c, line).await?;
    let mut conferences = Vec::new();
    for k in c.calls().await? {
        if !states.contains(&k.state.as_str()) || line.is_some_and(|l| k.line != l) {
            continue;
        }
        // A conference's parent is the first of its conference's calls.
        let heads = c
            .conference_calls(&k.call)
            .await
            .ok()
            .and_then(|calls| calls.first().map(|f| f.call == k.call))
            .unwrap_or(false);
        if heads {
            conferences.push(k);
        }
    }
    one_of(conferences, "conference")
}

/// The line ID a `--line` names, if one was given.
pub(crate) async fn line_filter(c: &Client, line: Option<String>) -> Result<Option<u32>, Failure> {
    match line {
        Some(l) => Ok(Some(line_id(c, &l).await?)),
        None => Ok(None),
    }
}

/// The one call of `calls`, or a usage error naming them.
pub(crate) fn one_of(calls: Vec<Call>, what: &str) -> Result<String, Failure> {
    match calls.as_slice() {
        [one] => Ok(one.call.clone()),
        [] => Err(not_found(format!("no {what} in this log-on"))),
        _ => Err(usage(format!(
            "{} calls could be the {what}; name one: {}",
            calls.len(),
            calls
                .iter()
                .map(|k| short(&k.call))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A line open to place or take a call on: the given line's (opened as owner if it is not open yet), or
/// the first open one, or the first line opened as owner.
pub(crate) async fn line_open(c: &Client, given: Option<&str>) -> Result<String, Failure> {
    let opens = c.snapshot().await?.lines;
    let id = match given {
        Some(l) => line_id(c, l).await?,
        None => match opens.first() {
            Some(o) => return Ok(o.line_handle.clone()),
            None => c
                .lines()
                .await?
                .first()
                .map(|l| l.id)
                .ok_or_else(|| not_found("this log-on's profile has no lines"))?,
        },
    };
    if let Some(o) = opens.iter().find(|o| o.line == id) {
        return Ok(o.line_handle.clone());
    }
    Ok(c.open_line(id, "owner").await?.line_handle)
}
