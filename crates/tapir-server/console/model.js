// The console's logic, apart from the page: what a call's buttons are, the request each one sends,
// and how the event stream is followed and resumed. No DOM and no network here, so that
// `node --test crates/tapir-server/console/` checks it.

// Every call operation the API names (docs/api.md, "Operations"), with what it asks for. A button is
// shown for an operation only when the call's own `features` list it; an operation the console does
// not know yet still gets a button, with no inputs.
export const OPERATIONS = {
  accept: { label: "Accept" },
  answer: { label: "Answer" },
  reject: { label: "Reject" },
  redirect: { label: "Redirect", inputs: [{ name: "destination", label: "to" }] },
  drop: { label: "Hang up" },
  dial: { label: "Dial", inputs: [{ name: "digits", label: "digits" }] },
  hold: { label: "Hold" },
  unhold: { label: "Unhold" },
  "swap-hold": {
    label: "Swap hold",
    inputs: [{ name: "held", label: "with", call: true }],
    // The request goes to the active call and names the held one.
    sentTo: (c) => !c.state.startsWith("on_hold"),
  },
  "blind-transfer": { label: "Transfer", inputs: [{ name: "destination", label: "to" }] },
  "setup-transfer": { label: "Consult to transfer" },
  "complete-transfer": {
    label: "Complete transfer",
    inputs: [{ name: "consultation", label: "with", call: true }],
    // The request goes to the held call and names its consultation call.
    sentTo: (c) => c.state.startsWith("on_hold"),
  },
  "setup-conference": { label: "Start conference" },
  "prepare-add-to-conference": { label: "Add a party" },
  "add-to-conference": {
    label: "Join conference",
    inputs: [{ name: "consultation", label: "with", call: true }],
    // The request goes to the conference and names the consultation call.
    sentTo: (c) => c.state === "on_hold_pending_conference",
  },
  "remove-from-conference": { label: "Remove from conference" },
  park: { label: "Park", inputs: [{ name: "orbit", label: "orbit", optional: true }] },
  "complete-call": {
    label: "Call back when free",
    body: { completion_mode: "callback" },
  },
  "generate-digits": { label: "Send digits", inputs: [{ name: "digits", label: "digits" }] },
  "monitor-digits": { label: "Watch digits" },
  "secure-call": { label: "Secure" },
  handoff: { label: "Hand off", inputs: [{ name: "application", label: "to application" }] },
};

// The operations a call's buttons offer, in the order the call lists them.
export function buttonsFor(call) {
  return (call.features || []).map((op) => {
    const known = OPERATIONS[op];
    return {
      op,
      label: known ? known.label : op,
      inputs: known && known.inputs ? known.inputs : [],
    };
  });
}

// The calls the other-call input of `op` on `call` may name: this session's other calls on the same
// line open that list `op` too (the gate lists an operation of two calls on both of them).
export function partnersFor(call, calls, op) {
  return calls.filter(
    (c) =>
      c.call !== call.call &&
      c.line_handle === call.line_handle &&
      (c.features || []).includes(op),
  );
}

// The request of operation `op` started from `call`'s card: the call it goes to and its body. An
// operation of two calls goes to the one the API names in the path, whichever card it started from.
export function requestFor(call, op, values) {
  const known = OPERATIONS[op] || {};
  const body = bodyFor(op, values);
  const other = (known.inputs || []).find((i) => i.call);
  if (other && known.sentTo && !known.sentTo(call)) {
    const target = body[other.name];
    body[other.name] = call.call;
    return { target, body };
  }
  return { target: call.call, body };
}

// The request body of operation `op` from the values typed into its inputs (empty optional inputs
// are left out).
export function bodyFor(op, values) {
  const known = OPERATIONS[op] || {};
  const body = { ...(known.body || {}) };
  for (const input of known.inputs || []) {
    const v = (values[input.name] ?? "").trim();
    if (v === "") {
      if (input.optional) continue;
      throw new Error(`${known.label || op} needs ${input.label}`);
    }
    body[input.name] = v;
  }
  return body;
}

// An API error in words: `{"code", "message"}` as the service sends it, or what went wrong on the way.
export function errorText(status, body) {
  if (body && typeof body === "object" && body.message) {
    return `${body.message} (${body.code}, ${status})`;
  }
  return `request failed with status ${status}`;
}

// Follows one log-on's event stream: the last sequence number applied, the calls the events named,
// and the log, newest first. `apply` returns what the page must do next.
export class Stream {
  constructor(lastSeq = 0) {
    this.lastSeq = lastSeq;
    this.log = [];
  }

  // Where to (re)connect: every event after the last one applied, none twice.
  resumeAfter() {
    return this.lastSeq;
  }

  // Applies one message from `/v1/events`. Returns `{ refresh }` (a call handle whose state to
  // re-read), `{ snapshot: true }` (the position was trimmed: read the snapshot), `{ ended: true }`,
  // `{ gap }` (a sequence number was skipped: the service broke its promise) or `{}`.
  apply(msg) {
    if (msg.type === "trimmed") return { snapshot: true, firstKept: msg.first_kept };
    if (msg.type === "end") return { ended: true };
    if (typeof msg.seq !== "number") return {};
    if (msg.seq <= this.lastSeq) return {}; // already applied (a resume repeats nothing, but be sure)
    const expected = this.lastSeq + 1;
    const out = {};
    if (this.lastSeq > 0 && msg.seq !== expected) out.gap = { expected, got: msg.seq };
    this.lastSeq = msg.seq;
    this.log.unshift(msg);
    if (this.log.length > 500) this.log.length = 500;
    if (msg.call) out.refresh = msg.call;
    return out;
  }

  // After a snapshot: its calls replace what the page shows and the stream goes on after `seq`.
  restart(seq) {
    this.lastSeq = seq;
  }
}

// One event in words, for the log.
export function describe(ev) {
  switch (ev.type) {
    case "new_call":
      return `new call ${ev.call_id} (${ev.privilege})`;
    case "call_state":
      return ev.state_detail || ev.state;
    case "call_info":
      return `information: ${ev.changed}`;
    case "digit":
      return `digit ${ev.digit}`;
    case "line": {
      const e = ev.event || {};
      return `line ${e.kind}${e.reason ? `: ${e.reason}` : ""}${e.orbit ? ` ${e.orbit}` : ""}`;
    }
    case "line_closed":
      return "line closed";
    case "status":
      return `status: ${ev.row?.display_name ?? ""} ${ev.row?.state ?? ""}`;
    case "events_lost":
      return `events ${ev.first}–${ev.last} lost by the service`;
    default:
      return ev.type;
  }
}

// Whether `call` belongs to a conference (a party, or the conference's own call), so that its card
// lists the conference's calls (`GET /v1/calls/{call}/conference-calls`).
export function inConference(call) {
  const f = call.features || [];
  return (
    call.state === "conferenced" ||
    call.state === "on_hold_pending_conference" ||
    f.includes("prepare-add-to-conference") ||
    f.includes("remove-from-conference")
  );
}

// A state as people read it: "on hold pending transfer", "connected (active)".
export function stateText(detail) {
  return String(detail || "").replaceAll("_", " ");
}

// A party as people read it: "Alice (2001)", "2001", or "—".
export function party(p) {
  if (!p || (!p.name && !p.number)) return "—";
  if (p.name && p.number) return `${p.name} (${p.number})`;
  return p.name || p.number;
}

// Seconds as "m:ss".
export function elapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// The facts about a call beyond its three parties, as [label, text] rows, only those it has: who
// redirected it and where to, where it came from and why, and the calls it is tied to.
export function relations(call) {
  const rows = [];
  if (call.redirecting) rows.push(["Redirected by", party(call.redirecting)]);
  if (call.redirection) rows.push(["Redirected to", party(call.redirection)]);
  if (call.origin || call.reason) {
    rows.push(["Origin", [call.origin, call.reason].filter((x) => x && x !== "direct").map(stateText).join(", ") || "direct"]);
  }
  if (call.consultation_call_id) rows.push(["Consultation with", call.consultation_call_id]);
  if (call.related_call_id) rows.push(["Related call", call.related_call_id]);
  return rows;
}

// A line's devices (registered phones) in words: "sip:2001@… from 127.0.0.1:5071, 45 s left".
export function devicesText(devices) {
  if (!devices || devices.length === 0) return "";
  return devices
    .map((d) => {
      const from = d.source ? ` from ${d.source}` : "";
      const left = d.expires_in === undefined || d.expires_in === null ? ", fixed" : `, ${d.expires_in} s left`;
      return `${d.contact}${from}${left}`;
    })
    .join("; ");
}
