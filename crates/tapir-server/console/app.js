// The console page: an application of the public API like any other. It logs on, keeps its token in
// this tab's session storage (never in a URL or a cookie), reads its own event stream and shows each
// call with the buttons its own `features` list. The logic worth testing lives in model.js.
import {
  Stream,
  buttonsFor,
  describe,
  devicesText,
  elapsed,
  inConference,
  errorText,
  partnersFor,
  party,
  relations,
  requestFor,
  stateText,
} from "./model.js";

const $ = (selector) => document.querySelector(selector);
const KEY = "tapir.console";

// What this tab knows: the log-on, its line opens and calls, the event stream.
const state = {
  token: null,
  who: null,
  lines: [], // GET /v1/lines
  opens: new Map(), // line ID → { handle, privilege, status }
  calls: new Map(), // call handle → the API's call object
  conferences: new Map(), // call handle → the call IDs of its conference, the conference's first
  since: new Map(), // call handle → [state, when it was entered]
  stream: new Stream(),
  socket: null,
  closing: false,
  reconnects: 0,
  historyNext: null,
};

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v !== undefined && v !== null) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function showError(text) {
  $("#error").textContent = text;
}

// ---- the API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(errorText(status, body));
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return null;
  const type = r.headers.get("content-type") || "";
  const data = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) {
    if (r.status === 401 || r.status === 410) loggedOff("The log-on has ended; log on again.");
    throw new ApiError(r.status, data);
  }
  return data;
}

// ---- log-on --------------------------------------------------------------------------------------

function save() {
  if (!state.token) {
    sessionStorage.removeItem(KEY);
    return;
  }
  const opens = [...state.opens].map(([line, o]) => [line, { handle: o.handle, privilege: o.privilege }]);
  sessionStorage.setItem(KEY, JSON.stringify({ token: state.token, opens }));
}

async function logon(form) {
  const f = new FormData(form);
  const r = await fetch("/v1/sessions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      application: f.get("application"),
      secret: f.get("secret"),
      profile: f.get("profile") || undefined,
      shared: f.get("shared") === "on",
    }),
  });
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  state.token = data.token;
  state.opens.clear();
  save();
  await start();
}

function loggedOff(why) {
  state.closing = true;
  if (state.socket) state.socket.close();
  state.socket = null;
  state.token = null;
  state.calls.clear();
  state.opens.clear();
  state.stream = new Stream();
  save();
  $("#console-view").hidden = true;
  $("#logon-view").hidden = false;
  $("#logoff").hidden = true;
  $("#who").textContent = "";
  $("#calls").replaceChildren();
  $("#events").replaceChildren();
  if (why) showError(why);
}

async function start() {
  state.who = await api("GET", "/v1/session");
  state.closing = false;
  $("#who").textContent = `${state.who.application} · profile ${state.who.profile}${state.who.shared ? " · shared" : ""}`;
  $("#logon-view").hidden = true;
  $("#console-view").hidden = false;
  $("#logoff").hidden = false;
  showError("");
  state.lines = await api("GET", "/v1/lines");
  await snapshot();
  connect();
}

// The session's line opens and calls as they are now, and where its event stream goes on.
async function snapshot() {
  const snap = await api("GET", "/v1/snapshot");
  const known = new Map(state.opens);
  state.opens.clear();
  for (const o of snap.lines) {
    const before = known.get(o.line);
    state.opens.set(o.line, { handle: o.line_handle, privilege: before ? before.privilege : "open" });
  }
  state.calls.clear();
  for (const c of snap.calls) setCall(c);
  state.stream.restart(snap.seq);
  save();
  await Promise.all([...state.opens.keys()].map(lineStatus));
  renderLines();
  renderCalls();
}

// ---- the event stream -----------------------------------------------------------------------------

function connect() {
  if (!state.token || state.closing) return;
  const after = state.stream.resumeAfter();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // The token travels as a sub-protocol, not in the URL.
  const ws = new WebSocket(`${scheme}//${location.host}/v1/events?after=${after}`, [
    "tapir",
    `tapir.token.${state.token}`,
  ]);
  state.socket = ws;
  ws.addEventListener("open", () => {
    $("#stream").textContent =
      state.reconnects === 0
        ? `Live: events after ${after}.`
        : `Reconnected: resumed after event ${after}, nothing missed.`;
  });
  ws.addEventListener("message", (m) => {
    let msg;
    try {
      msg = JSON.parse(m.data);
    } catch {
      return;
    }
    onMessage(msg);
  });
  ws.addEventListener("close", () => {
    if (state.socket !== ws) return;
    state.socket = null;
    if (state.closing || !state.token) return;
    state.reconnects += 1;
    $("#stream").textContent = `Connection lost after event ${state.stream.resumeAfter()}; reconnecting…`;
    setTimeout(connect, 500);
  });
}

async function onMessage(msg) {
  const r = state.stream.apply(msg);
  if (r.snapshot) {
    $("#stream").textContent = `The journal no longer holds our position (first kept: ${r.firstKept}); read a snapshot.`;
    state.closing = true;
    if (state.socket) state.socket.close();
    state.closing = false;
    await snapshot();
    connect();
    return;
  }
  if (r.ended) {
    loggedOff("The log-on has ended.");
    return;
  }
  if (r.gap) $("#stream").textContent = `Events ${r.gap.expected}–${r.gap.got - 1} are missing.`;
  if (msg.type === "events_lost") $("#stream").textContent = `${describe(msg)}: reading a snapshot.`;
  renderEvents();
  if (msg.type === "line" || msg.type === "line_closed") {
    const open = [...state.opens].find(([, o]) => o.handle === msg.line_handle);
    if (open) {
      if (msg.type === "line_closed") state.opens.delete(open[0]);
      else await lineStatus(open[0]);
      renderLines();
    }
  }
  if (msg.type === "events_lost") await snapshot();
  if (r.refresh) await refreshCall(r.refresh);
}

// Reads calls again after events named them, and the other calls on their lines: what one call may
// do depends on the others (a consultation call answering lets its held original complete the
// transfer). One reading runs at a time and a call named during it is read again afterwards, so a
// reply that left the service before a later event can never be drawn over that event's result.
const refreshing = { wanted: new Set(), running: null };

function refreshCall(handle) {
  refreshing.wanted.add(handle);
  if (!refreshing.running) {
    refreshing.running = drainRefreshes().finally(() => {
      refreshing.running = null;
    });
  }
  return refreshing.running;
}

async function drainRefreshes() {
  while (refreshing.wanted.size > 0) {
    const named = [...refreshing.wanted];
    refreshing.wanted.clear();
    const lines = new Set(named.map((h) => state.calls.get(h)?.line_handle));
    const handles = new Set([
      ...named,
      ...[...state.calls.values()].filter((c) => lines.has(c.line_handle)).map((c) => c.call),
    ]);
    await Promise.all([...handles].map(readCall));
    renderCalls();
  }
}

async function readCall(h) {
  try {
    const c = await api("GET", `/v1/calls/${h}`);
    setCall(c);
    if (inConference(c)) {
      const calls = await api("GET", `/v1/calls/${h}/conference-calls`);
      state.conferences.set(h, calls.map((x) => x.call_id));
    } else {
      state.conferences.delete(h);
    }
  } catch (e) {
    if (e.code === "invalid_call_handle") state.calls.delete(h);
    if (e.code === "no_conference") state.conferences.delete(h);
  }
}

function setCall(c) {
  const before = state.since.get(c.call);
  if (!before || before[0] !== c.state) state.since.set(c.call, [c.state, Date.now()]);
  state.calls.set(c.call, c);
}

// ---- lines -----------------------------------------------------------------------------------------

async function lineStatus(line) {
  const o = state.opens.get(line);
  if (!o) return;
  try {
    o.status = await api("GET", `/v1/line-opens/${o.handle}`);
  } catch (e) {
    o.status = null;
  }
}

async function openLine(line, privilege) {
  const r = await api("POST", "/v1/line-opens", { line, privilege });
  state.opens.set(line, { handle: r.line_handle, privilege });
  save();
  await lineStatus(line);
  renderLines();
}

async function closeLine(line) {
  const o = state.opens.get(line);
  if (!o) return;
  await api("DELETE", `/v1/line-opens/${o.handle}`);
  state.opens.delete(line);
  save();
  renderLines();
}

async function forward(line, form) {
  const o = state.opens.get(line);
  const f = new FormData(form);
  const to = String(f.get("to") || "").trim();
  const body = { do_not_disturb: f.get("dnd") === "on" };
  if (to) body.rules = [{ condition: "unconditional", destination: to }];
  await api("POST", `/v1/line-opens/${o.handle}/forward`, body);
  await lineStatus(line);
  renderLines();
}

function lineRow(line) {
  const o = state.opens.get(line.id);
  const status = o && o.status;
  const serviceText = !o
    ? "not open"
    : !status
      ? "open"
      : status.in_service
        ? "in service"
        : `out of service${status.reason ? `: ${status.reason}` : ""}`;
  const devices = status ? devicesText(status.devices) : "";
  const name = `${line.name}`;
  const actions = o
    ? [
        el("span", {}, `open (${o.privilege}) `),
        el("button", { type: "button", onclick: () => act(() => closeLine(line.id)) }, "Close"),
        el(
          "form",
          { class: "inline", onsubmit: (e) => (e.preventDefault(), act(() => forward(line.id, e.target))) },
          el("label", {}, "Forward to ", el("input", { name: "to", size: 8, "aria-label": `Forward ${name} to` })),
          el("label", { class: "check" }, el("input", { name: "dnd", type: "checkbox" }), " Do not disturb"),
          el("button", { type: "submit" }, "Set"),
        ),
      ]
    : [
        el("button", { type: "button", onclick: () => act(() => openLine(line.id, "owner")), "aria-label": `Open ${name} as owner` }, "Own"),
        el("button", { type: "button", onclick: () => act(() => openLine(line.id, "monitor")), "aria-label": `Open ${name} as monitor` }, "Monitor"),
      ];
  return el(
    "tr",
    { dataset: { line: String(line.id) } },
    el("th", { scope: "row" }, name),
    el("td", {}, line.provider),
    el("td", {}, line.addresses.join(", ")),
    el("td", {}, serviceText, devices ? el("div", { class: "devices" }, `Devices: ${devices}`) : null),
    el("td", {}, actions),
  );
}

function renderLines() {
  $("#lines tbody").replaceChildren(...state.lines.map(lineRow));
  const select = $("#make select");
  const chosen = select.value;
  select.replaceChildren(
    ...state.lines
      .filter((l) => state.opens.has(l.id))
      .map((l) => el("option", { value: state.opens.get(l.id).handle }, l.name)),
  );
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
}

// ---- calls -----------------------------------------------------------------------------------------

async function operate(call, op, values) {
  const { target, body } = requestFor(call, op, values);
  const r = await api("POST", `/v1/calls/${target}/${op}`, body);
  // The reply names the calls the operation made or changed (a consultation call, a conference).
  for (const c of callsIn(r)) setCall(c);
  await refreshCall(call.call);
}

function callsIn(value) {
  if (!value || typeof value !== "object") return [];
  if (typeof value.call === "string" && typeof value.state === "string") return [value];
  return Object.values(value).flatMap(callsIn);
}

function callCard(c) {
  const calls = [...state.calls.values()];
  const since = state.since.get(c.call);
  const card = el(
    "article",
    { class: `call ${c.state}`, dataset: { call: c.call, callId: c.call_id }, "aria-label": `Call ${c.call_id}` },
    el("h3", {}, el("span", { class: "state" }, stateText(c.state_detail)), " ", el("span", { class: "timer", dataset: { since: String(since ? since[1] : Date.now()) } }, "")),
    el(
      "dl",
      {},
      el("dt", {}, "Caller"), el("dd", { class: "caller" }, party(c.caller)),
      el("dt", {}, "Called"), el("dd", { class: "called" }, party(c.called)),
      el("dt", {}, "Connected"), el("dd", { class: "connected" }, party(c.connected)),
      el("dt", {}, "Call ID"), el("dd", { class: "call-id" }, c.call_id),
      el("dt", {}, "Handle"), el("dd", { class: "handle" }, c.call),
      el("dt", {}, "Privilege"), el("dd", { class: "privilege" }, c.privilege),
      el("dt", {}, "Line"), el("dd", {}, lineName(c.line)),
      relations(c).map(([label, text]) => [el("dt", {}, label), el("dd", { class: label.toLowerCase().replaceAll(" ", "-") }, text)]),
      state.conferences.has(c.call)
        ? [el("dt", {}, "Conference"), el("dd", { class: "conference" }, state.conferences.get(c.call).join(", "))]
        : null,
    ),
  );
  const actions = el("div", { class: "actions", role: "group", "aria-label": `Operations on call ${c.call_id}` });
  for (const b of buttonsFor(c)) {
    if (b.inputs.length === 0) {
      actions.append(
        el("button", { type: "button", dataset: { op: b.op }, onclick: () => act(() => operate(c, b.op, {}), card) }, b.label),
      );
      continue;
    }
    const form = el("form", {
      class: "inline",
      dataset: { op: b.op },
      onsubmit: (e) => {
        e.preventDefault();
        const values = Object.fromEntries(new FormData(e.target));
        act(() => operate(c, b.op, values), card);
      },
    });
    for (const input of b.inputs) {
      const label = `${b.label} ${input.label}`;
      if (input.call) {
        const options = partnersFor(c, calls, b.op).map((p) =>
          el("option", { value: p.call }, `${p.call_id} · ${stateText(p.state_detail)}`),
        );
        form.append(el("select", { name: input.name, "aria-label": label }, options));
      } else {
        form.append(el("input", { name: input.name, size: 8, "aria-label": label, placeholder: input.label }));
      }
    }
    form.append(el("button", { type: "submit", dataset: { op: b.op } }, b.label));
    actions.append(form);
  }
  if (c.state === "idle") {
    actions.append(
      el("button", { type: "button", onclick: () => act(() => dismiss(c), card) }, "Dismiss"),
    );
  }
  card.append(actions, el("p", { class: "call-error", role: "alert" }));
  return card;
}

async function dismiss(c) {
  await api("DELETE", `/v1/calls/${c.call}`);
  state.calls.delete(c.call);
  renderCalls();
}

function lineName(id) {
  const l = state.lines.find((x) => x.id === id);
  return l ? l.name : String(id);
}

// What a call's card shows, as one string: a card whose drawing would not change is kept as it is
// (with whatever is being typed into it, and the focus), not drawn again.
function cardKey(c) {
  const mates = [...state.calls.values()]
    .filter((o) => o.line_handle === c.line_handle)
    .map((o) => [o.call, o.call_id, o.state_detail, o.features]);
  return JSON.stringify([c, state.since.get(c.call), state.conferences.get(c.call), mates]);
}

function renderCalls() {
  const box = $("#calls");
  const shown = new Map([...box.querySelectorAll("article.call")].map((a) => [a.dataset.call, a]));
  const cards = [...state.calls.values()].map((c) => {
    const key = cardKey(c);
    const old = shown.get(c.call);
    if (old && old.dataset.key === key) return old;
    const card = callCard(c);
    card.dataset.key = key;
    // A card drawn again keeps what was being typed into it, and where.
    if (old) {
      for (const i of card.querySelectorAll("input")) {
        const before = old.querySelector(`form[data-op="${i.closest("form")?.dataset.op}"] input[name="${i.name}"]`);
        if (before) {
          i.value = before.value;
          if (document.activeElement === before) queueMicrotask(() => i.focus());
        }
      }
    }
    return card;
  });
  const wanted = cards.length ? cards : [el("p", {}, "No calls.")];
  // Moving a node drops its focus: change the children only where they differ.
  if (wanted.length !== box.children.length || wanted.some((c, i) => box.children[i] !== c)) {
    box.replaceChildren(...wanted);
  }
  const filter = $("#event-filter");
  const chosen = filter.value;
  filter.replaceChildren(
    el("option", { value: "" }, "every call"),
    ...[...state.calls.values()].map((c) => el("option", { value: c.call }, `${c.call_id} (${c.call})`)),
  );
  if ([...filter.options].some((o) => o.value === chosen)) filter.value = chosen;
  tick();
}

function tick() {
  for (const t of document.querySelectorAll(".timer")) {
    t.textContent = elapsed(Date.now() - Number(t.dataset.since));
  }
}

// ---- events ----------------------------------------------------------------------------------------

function renderEvents() {
  const only = $("#event-filter").value;
  const items = state.stream.log
    .filter((e) => !only || e.call === only)
    .slice(0, 200)
    .map((e) =>
      el(
        "li",
        { value: String(e.seq), dataset: { seq: String(e.seq) } },
        el("span", { class: "seq" }, `#${e.seq}`),
        " ",
        e.call ? el("span", { class: "call-ref" }, e.call) : null,
        " ",
        describe(e),
      ),
    );
  $("#events").replaceChildren(...items);
}

// ---- make a call -----------------------------------------------------------------------------------

let translating = 0;
async function translate() {
  const number = $("#make [name=destination]").value.trim();
  const mine = ++translating;
  if (!number) {
    $("#dialable").textContent = "";
    return;
  }
  try {
    const t = await api("POST", "/v1/translate", { address: number });
    if (mine === translating) $("#dialable").textContent = `dials ${t.dialable}`;
  } catch {
    if (mine === translating) $("#dialable").textContent = "dialled as typed";
  }
}

async function makeCall(form) {
  const f = new FormData(form);
  const destination = String(f.get("destination") || "").trim();
  const body = { line_handle: f.get("line_handle") };
  if (destination) body.destination = destination;
  const c = await api("POST", "/v1/calls", body);
  setCall(c);
  // The reply is the call as it was dialled; events since may have moved it on.
  await refreshCall(c.call);
}

// ---- status, routes, history ----------------------------------------------------------------------

function table(selector, columns, rows) {
  $(`${selector} thead`).replaceChildren(el("tr", {}, columns.map(([, title]) => el("th", { scope: "col" }, title))));
  $(`${selector} tbody`).replaceChildren(
    ...rows.map((r) => el("tr", {}, columns.map(([key]) => el("td", {}, typeof key === "function" ? key(r) : (r[key] ?? "—"))))),
  );
}

async function showStatus() {
  const rows = await api("GET", "/v1/status");
  table("#status", [["display_name", "Service"], ["state", "State"], ["reason", "Reason"], ["lines", "Lines"], ["lines_out_of_service", "Out of service"], ["sessions", "Sessions"], ["faults", "Faults"], ["refused_reports", "Refused reports"], ["last_error", "Last error"]], rows);
}

async function showRoutes(table_ = null) {
  const t = table_ || (await api("GET", "/v1/routes"));
  const rows = t.routes.map((r) =>
    el(
      "tr",
      {},
      el("td", {}, r.class),
      el("td", {}, r.application),
      el("td", {}, el("button", { type: "button", onclick: () => act(async () => showRoutes(await api("DELETE", `/v1/routes/${encodeURIComponent(r.class)}`))) }, `Clear ${r.class}`)),
    ),
  );
  rows.push(el("tr", {}, el("td", {}, "(default)"), el("td", {}, t.default), el("td", {})));
  $("#routes tbody").replaceChildren(...rows);
}

function historyQuery(form, extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form)) if (String(v).trim()) q.set(k, String(v).trim());
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  return q;
}

async function showHistory(older = false) {
  const form = $("#history-filter");
  const extra = { limit: "20" };
  if (older && state.historyNext) extra.before = String(state.historyNext);
  const r = await api("GET", `/v1/cdrs?${historyQuery(form, extra)}`);
  state.historyNext = r.next ?? null;
  $("#history-more").hidden = state.historyNext === null;
  table(
    "#history",
    [["started", "Started"], ["call_id", "Call ID"], ["line_name", "Line"], [(x) => party(x.caller), "From"], [(x) => party(x.called), "To"], ["disposition", "Disposition"], [(x) => elapsed(x.talking_ms), "Talking"]],
    r.records,
  );
}

async function exportCsv() {
  const text = await api("GET", `/v1/cdrs?${historyQuery($("#history-filter"), { format: "csv" })}`);
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = el("a", { href: url, download: "tapir-calls.csv" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function showView(name) {
  for (const b of document.querySelectorAll("nav [data-view]")) b.setAttribute("aria-pressed", String(b.dataset.view === name));
  for (const p of document.querySelectorAll("[data-panel]")) p.hidden = p.dataset.panel !== name;
  if (name === "status") act(showStatus);
  if (name === "routes") act(() => showRoutes());
  if (name === "history") act(() => showHistory());
}

// Runs a user's request and shows a failure in words, on the call's card when there is one.
async function act(f, card = null) {
  try {
    showError("");
    await f();
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    const where = card && card.isConnected ? card : card && document.querySelector(`[data-call="${card.dataset.call}"]`);
    if (where) where.querySelector(".call-error").textContent = text;
    showError(text);
  }
}

// ---- wiring ----------------------------------------------------------------------------------------

function wire() {
  $("#logon").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => logon(e.target));
  });
  $("#logoff").addEventListener("click", () =>
    act(async () => {
      await api("DELETE", "/v1/session").catch(() => null);
      loggedOff("");
    }),
  );
  $("#make").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => makeCall(e.target));
  });
  $("#make [name=destination]").addEventListener("input", translate);
  for (const b of document.querySelectorAll(".pad button")) {
    b.addEventListener("click", () => {
      const input = $("#make [name=destination]");
      input.value += b.textContent;
      translate();
    });
  }
  $("#event-filter").addEventListener("change", renderEvents);
  for (const b of document.querySelectorAll("nav [data-view]")) b.addEventListener("click", () => showView(b.dataset.view));
  $("#status-refresh").addEventListener("click", () => act(showStatus));
  $("#route-set").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    act(async () => showRoutes(await api("PUT", `/v1/routes/${encodeURIComponent(f.get("class"))}`, { application: f.get("application") })));
  });
  $("#route-default").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    act(async () => showRoutes(await api("PUT", "/v1/routes/default", { default: f.get("default") })));
  });
  $("#history-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => showHistory());
  });
  $("#history-more").addEventListener("click", () => act(() => showHistory(true)));
  $("#history-csv").addEventListener("click", () => act(exportCsv));
  setInterval(tick, 1000);
}

// For the browser tests: the live event socket, to cut it as a network would.
window.tapirConsole = { socket: () => state.socket, lastSeq: () => state.stream.resumeAfter() };

wire();
const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
if (saved && saved.token) {
  state.token = saved.token;
  for (const [line, o] of saved.opens || []) state.opens.set(line, o);
  act(start);
}
