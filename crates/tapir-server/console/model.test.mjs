// Unit tests of the console's logic: `node --test crates/tapir-server/console/`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { OPERATIONS, Stream, bodyFor, buttonsFor, describe, devicesText, errorText, partnersFor, relations, requestFor, stateText, inConference } from "./model.js";

test("a call's buttons are exactly its features, in its order", () => {
  const call = { features: ["answer", "reject", "drop"] };
  assert.deepEqual(buttonsFor(call).map((b) => b.op), ["answer", "reject", "drop"]);
  assert.deepEqual(buttonsFor({ features: [] }), []);
  // An operation newer than the console still gets a button, under its own name.
  assert.deepEqual(buttonsFor({ features: ["teleport"] }), [{ op: "teleport", label: "teleport", inputs: [] }]);
});

test("every operation of the API's table has a label", () => {
  for (const op of ["accept", "answer", "reject", "redirect", "drop", "dial", "hold", "unhold", "swap-hold",
    "blind-transfer", "setup-transfer", "complete-transfer", "setup-conference", "prepare-add-to-conference",
    "add-to-conference", "remove-from-conference", "park", "complete-call", "generate-digits",
    "monitor-digits", "secure-call", "handoff"]) {
    assert.ok(OPERATIONS[op]?.label, op);
  }
});

test("a request body carries the inputs, leaves out empty optional ones and refuses missing ones", () => {
  assert.deepEqual(bodyFor("blind-transfer", { destination: " 2003 " }), { destination: "2003" });
  assert.deepEqual(bodyFor("park", { orbit: "" }), {});
  assert.deepEqual(bodyFor("park", { orbit: "701" }), { orbit: "701" });
  assert.deepEqual(bodyFor("hold", {}), {});
  assert.deepEqual(bodyFor("complete-call", {}), { completion_mode: "callback" });
  assert.throws(() => bodyFor("redirect", {}), /needs to/);
});

test("partners are the other calls on the same line open that list the operation too", () => {
  const a = { call: "call:a", line_handle: "line:1", state: "on_hold", features: ["swap-hold"] };
  const b = { call: "call:b", line_handle: "line:1", state: "connected", features: ["swap-hold"] };
  const c = { call: "call:c", line_handle: "line:2", state: "connected", features: ["swap-hold"] };
  const d = { call: "call:d", line_handle: "line:1", state: "on_hold", features: [] };
  assert.deepEqual(partnersFor(b, [a, b, c, d], "swap-hold"), [a]);
});

test("an operation of two calls goes to the call the API names, from either card", () => {
  const conference = { call: "call:conf", state: "on_hold_pending_conference" };
  const consultation = { call: "call:cons", state: "connected" };
  assert.deepEqual(requestFor(conference, "add-to-conference", { consultation: "call:cons" }), {
    target: "call:conf",
    body: { consultation: "call:cons" },
  });
  assert.deepEqual(requestFor(consultation, "add-to-conference", { consultation: "call:conf" }), {
    target: "call:conf",
    body: { consultation: "call:cons" },
  });
  const held = { call: "call:h", state: "on_hold_pending_transfer" };
  assert.deepEqual(requestFor(consultation, "complete-transfer", { consultation: "call:h" }), {
    target: "call:h",
    body: { consultation: "call:cons" },
  });
  assert.deepEqual(requestFor(held, "swap-hold", { held: "call:cons" }), {
    target: "call:cons",
    body: { held: "call:h" },
  });
  assert.deepEqual(requestFor(consultation, "hold", {}), { target: "call:cons", body: {} });
});

test("the stream resumes after the last event applied and applies nothing twice", () => {
  const s = new Stream();
  assert.equal(s.resumeAfter(), 0);
  assert.deepEqual(s.apply({ seq: 1, type: "new_call", call: "call:a" }), { refresh: "call:a" });
  assert.deepEqual(s.apply({ seq: 2, type: "line", line_handle: "line:1", event: { kind: "ringing" } }), {});
  assert.equal(s.resumeAfter(), 2);
  // A message seen again after a reconnect changes nothing.
  assert.deepEqual(s.apply({ seq: 2, type: "line" }), {});
  assert.equal(s.log.length, 2);
  assert.deepEqual(s.apply({ seq: 4, type: "call_state", call: "call:a" }), {
    gap: { expected: 3, got: 4 },
    refresh: "call:a",
  });
  assert.equal(s.log[0].seq, 4, "newest first");
});

test("a trimmed position asks for the snapshot, and the stream goes on after it", () => {
  const s = new Stream(5);
  assert.deepEqual(s.apply({ type: "trimmed", first_kept: 90, snapshot: "/v1/snapshot" }), {
    snapshot: true,
    firstKept: 90,
  });
  s.restart(120);
  assert.equal(s.resumeAfter(), 120);
  assert.deepEqual(s.apply({ type: "end" }), { ended: true });
});

test("errors, states and events read as words", () => {
  assert.equal(stateText("on_hold_pending_transfer"), "on hold pending transfer");
  assert.equal(stateText("connected (active)"), "connected (active)");
  assert.equal(
    errorText(409, { code: "invalid_call_state", message: "not possible while the call is idle" }),
    "not possible while the call is idle (invalid_call_state, 409)",
  );
  assert.equal(errorText(502, null), "request failed with status 502");
  assert.equal(describe({ type: "call_state", state: "connected", state_detail: "connected (active)" }), "connected (active)");
  assert.equal(describe({ type: "line", event: { kind: "out_of_service", reason: "no phone" } }), "line out_of_service: no phone");
});

test("the calls of a conference are the ones whose cards list it", () => {
  assert.ok(inConference({ state: "conferenced", features: [] }));
  assert.ok(inConference({ state: "on_hold_pending_conference", features: [] }));
  assert.ok(inConference({ state: "connected", features: ["prepare-add-to-conference"] }));
  assert.ok(!inConference({ state: "connected", features: ["hold", "setup-conference"] }));
});

test("a call's relations: redirection, origin and reason, and the calls it is tied to, only those it has", () => {
  assert.deepEqual(relations({ origin: "outbound", reason: "direct" }), [["Origin", "outbound"]]);
  assert.deepEqual(
    relations({
      origin: "internal",
      reason: "forward_unconditional",
      redirecting: { number: "2002", name: "Bob" },
      consultation_call_id: "call-7",
    }),
    [
      ["Redirected by", "Bob (2002)"],
      ["Origin", "internal, forward unconditional"],
      ["Consultation with", "call-7"],
    ],
  );
  assert.deepEqual(relations({ related_call_id: "call-2", redirection: { number: "5551000" } }), [
    ["Redirected to", "5551000"],
    ["Related call", "call-2"],
  ]);
});

test("a line's devices in words: where each registered from and how long it has left, or fixed", () => {
  assert.equal(devicesText([]), "");
  assert.equal(devicesText(undefined), "");
  assert.equal(
    devicesText([
      { contact: "sip:2001@127.0.0.1:5071", source: "127.0.0.1:5071", expires_in: 45 },
      { contact: "sip:127.0.0.1:5099" },
    ]),
    "sip:2001@127.0.0.1:5071 from 127.0.0.1:5071, 45 s left; sip:127.0.0.1:5099, fixed",
  );
});
