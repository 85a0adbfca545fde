// The web console in a real browser: Debian's chromium, headless, driven by playwright-core, against a
// tapird on loopback with its embedded default configuration. Run by `.ci/console`:
//   TAPIRD=target/debug/tapird node --test tests/console/
// Screenshots of the main views go to target/console/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "..", "..");
const TAPIRD = resolve(ROOT, process.env.TAPIRD || "target/debug/tapird");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = join(ROOT, "target", "console");
const WAIT = { timeout: 15000 };

let tapird, dataDir, base, browser;

function freePort() {
  return new Promise((done, fail) => {
    const s = createServer();
    s.on("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

before(async () => {
  const port = await freePort();
  dataDir = mkdtempSync(join(tmpdir(), "tapir-console-"));
  base = `http://127.0.0.1:${port}`;
  tapird = spawn(TAPIRD, ["--listen", `127.0.0.1:${port}`, "--data-dir", dataDir], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, TAPIR_LOG: process.env.TAPIR_LOG || "warn" },
  });
  await until("tapird to answer /healthz", async () => {
    try {
      return (await fetch(`${base}/healthz`)).ok;
    } catch {
      return false;
    }
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  tapird?.kill("SIGTERM");
  await new Promise((r) => (tapird ? tapird.on("exit", r) : r()));
  rmSync(dataDir, { recursive: true, force: true });
});

// A page logged on as `application`, owning the line of extension `number`.
async function operator(application, number) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(String(e)));
  // A refused request is logged by the browser as a failed load; the page shows those in words, and
  // anything else logged as an error is a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(m.text());
  });
  await page.goto(base);
  const form = page.locator("#logon");
  await form.getByLabel("Application").fill(application);
  await form.getByLabel("Secret").fill("tapir-dev");
  await page.getByRole("button", { name: "Log on" }).click();
  await page.locator("#lines tbody tr").first().waitFor(WAIT);
  const row = page.locator("#lines tbody tr").filter({
    has: page.locator("td", { hasText: new RegExp(`^${number}$`) }),
  });
  await row.first().getByRole("button", { name: /as owner/ }).click();
  await row.first().getByText("in service").waitFor(WAIT);
  return { page, context, problems };
}

// The card of the call with `callId` on `page` (or the only one).
function card(page, callId) {
  return callId ? page.locator(`article.call[data-call-id="${callId}"]`) : page.locator("article.call").first();
}

// Types `value` into `input`: the cards are drawn again as events arrive (keeping what was typed), so a
// fill that lands on a card just being replaced is typed again.
async function type(input, value) {
  await until(`${value} typed`, async () => {
    if ((await input.inputValue().catch(() => "")) !== value) await input.fill(value).catch(() => {});
    return (await input.inputValue().catch(() => "")) === value;
  });
}

async function stateOf(c) {
  return (await c.locator(".state").textContent()).trim();
}

// What the API says the call's features are, read with the page's own token.
async function features(page, handle) {
  return page.evaluate(async (h) => {
    const { token } = JSON.parse(sessionStorage.getItem("tapir.console"));
    const r = await fetch(`/v1/calls/${h}`, { headers: { Authorization: `Bearer ${token}` } });
    return (await r.json()).features;
  }, handle);
}

async function buttonsOn(c) {
  return c.locator(".actions [data-op]").evaluateAll((els) => [...new Set(els.map((e) => e.dataset.op))]);
}

test("two applications call, answer, hold, lose the socket and confer through the console", async () => {
  const alice = await operator("softphone", "2001");
  const bob = await operator("wallboard", "2002");
  try {
    await callAnswerHoldConfer(alice, bob);
  } catch (e) {
    // What each page showed when it failed, for whoever reads the CI log.
    await alice.page.screenshot({ path: join(SHOTS, "failure-alice.png"), fullPage: true });
    await bob.page.screenshot({ path: join(SHOTS, "failure-bob.png"), fullPage: true });
    throw e;
  }
});

async function callAnswerHoldConfer(alice, bob) {
  const a = alice.page;
  const b = bob.page;

  // Alice dials 2002 on the dial pad; the translated form shows as she types.
  for (const d of "2002") await a.locator(".pad button", { hasText: d }).click();
  await a.locator("#dialable").getByText("dials").waitFor(WAIT);
  await a.getByRole("button", { name: "Call", exact: true }).click();

  // Bob's console shows the offered call with an Answer button; he clicks it.
  const offered = card(b);
  await offered.getByRole("button", { name: "Answer" }).waitFor(WAIT);
  const callId = await offered.getAttribute("data-call-id");
  await offered.getByRole("button", { name: "Answer" }).click();

  // Both show it connected, with the same call ID and different handles.
  const mine = card(a, callId);
  const theirs = card(b, callId);
  await until("both ends connected", async () =>
    (await stateOf(mine)).startsWith("connected") && (await stateOf(theirs)).startsWith("connected"));
  const handleA = (await mine.locator(".handle").textContent()).trim();
  const handleB = (await theirs.locator(".handle").textContent()).trim();
  assert.notEqual(handleA, handleB, "two sessions, two handles");
  assert.equal(await mine.locator(".call-id").textContent(), callId);

  // The buttons are exactly the call's features: Answer, which a connected call does not list, is absent.
  assert.deepEqual((await buttonsOn(mine)).sort(), (await features(a, handleA)).sort());
  assert.equal(await mine.locator('[data-op="answer"]').count(), 0);
  await a.screenshot({ path: join(SHOTS, "connected.png"), fullPage: true });

  // Hold and unhold through the buttons.
  await mine.getByRole("button", { name: "Hold", exact: true }).click();
  await until("on hold", async () => (await stateOf(card(a, callId))) === "on hold");
  await card(a, callId).getByRole("button", { name: "Unhold" }).click();
  await until("connected again", async () => (await stateOf(card(a, callId))).startsWith("connected"));

  // A refused operation shows its error in words on the card.
  const transfer = card(a, callId).locator('form[data-op="blind-transfer"]');
  await type(transfer.locator("input"), "9");
  await transfer.getByRole("button").click();
  await card(a, callId).locator(".call-error").filter({ hasText: /invalid_address|invalid_dial_string/ }).waitFor(WAIT);

  // The socket is cut; the console reconnects and resumes: no event is missing from its log.
  const before = await a.evaluate(() => window.tapirConsole.lastSeq());
  await a.evaluate(() => window.tapirConsole.socket().close());
  await card(a, callId).getByRole("button", { name: "Hold", exact: true }).click();
  await a.locator("#stream").getByText("Reconnected").waitFor(WAIT);
  await card(a, callId).getByRole("button", { name: "Unhold" }).click();
  await until("events after the cut", async () => (await a.evaluate(() => window.tapirConsole.lastSeq())) > before + 1);
  const seqs = await a.locator("#events li").evaluateAll((li) => li.map((x) => Number(x.dataset.seq)));
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i - 1], seqs[i] + 1, `a gap in ${seqs}`);
  assert.equal(seqs.at(-1), 1, "the log goes back to the first event");

  // A three-way conference through buttons: start it, dial the consultation call, join.
  // The consultation call is the new card in dial tone: the connected call lists dial too (digits go
  // on as tones), so "a card with a dial form" could be either until the reply has been drawn.
  await card(a, callId).getByRole("button", { name: "Start conference" }).click();
  const fresh = a.locator("article.call.dial_tone");
  await fresh.waitFor(WAIT);
  const consult = card(a, await fresh.getAttribute("data-call-id"));
  assert.notEqual(await consult.getAttribute("data-call-id"), callId);
  // The consultation call and the conference waiting for it name each other.
  const waiting = a.locator("article.call.on_hold_pending_conference");
  await waiting.waitFor(WAIT);
  const waitingId = await waiting.getAttribute("data-call-id");
  await until("the consultation names the conference", async () =>
    (await consult.locator(".consultation-with").textContent().catch(() => "")) === waitingId);
  assert.equal(await waiting.locator(".consultation-with").textContent(), await consult.getAttribute("data-call-id"));
  await type(consult.locator('form[data-op="dial"] input'), "5555000");
  await consult.locator('form[data-op="dial"]').getByRole("button").click();
  const joining = a.locator('form[data-op="add-to-conference"]').first();
  await joining.waitFor(WAIT);
  await joining.getByRole("button").click();
  await until("three parties conferenced", async () =>
    (await a.locator("article.call .state", { hasText: /^conferenced$/ }).count()) === 2);
  // Each of its cards names the conference's calls: the conference first, then its two parties.
  await until("the conference listed on its three cards", async () =>
    (await a.locator("article.call .conference").count()) === 3);
  const members = (await a.locator("article.call .conference").first().textContent()).split(", ");
  assert.equal(members.length, 3, `${members}`);
  assert.ok(members.includes(callId), "the first call is a party");
  await a.screenshot({ path: join(SHOTS, "conference.png"), fullPage: true });

  // Bob reloads: the log-on survives in the tab, and the call is still there.
  await b.reload();
  await card(b, callId).waitFor(WAIT);
  await b.locator("#who").getByText("wallboard").waitFor(WAIT);

  // Hang up everything from Alice's side and log both off.
  for (let i = 0; i < 6; i++) {
    const hangUp = a.getByRole("button", { name: "Hang up" });
    if ((await hangUp.count()) === 0) break;
    await hangUp.first().click();
    await a.waitForTimeout(200);
  }
  await until("every call ended", async () => (await a.locator("article.call:not(.idle)").count()) === 0);

  // Status, routes and history: the calls just made are in the history, and export as CSV.
  await b.getByRole("button", { name: "Status" }).click();
  await b.locator("#status tbody tr").first().waitFor(WAIT);
  await b.getByRole("button", { name: "Routes" }).click();
  await b.locator("#routes tbody tr", { hasText: "(default)" }).waitFor(WAIT);
  await b.getByRole("button", { name: "History" }).click();
  await b.locator("#history tbody tr", { hasText: callId }).first().waitFor(WAIT);
  await b.screenshot({ path: join(SHOTS, "history.png"), fullPage: true });
  const [download] = await Promise.all([
    b.waitForEvent("download", WAIT),
    b.getByRole("button", { name: "Export CSV" }).click(),
  ]);
  const csv = await (await import("node:fs/promises")).readFile(await download.path(), "utf8");
  assert.match(csv.split("\n")[0], /call_id/, "a CSV header");
  assert.ok(csv.includes(callId), "the call is in the export");

  for (const p of [a, b]) await p.getByRole("button", { name: "Log off" }).click();
  await a.getByRole("button", { name: "Log on" }).waitFor(WAIT);
  assert.deepEqual(alice.problems, [], "the page logged errors");
  assert.deepEqual(bob.problems, [], "the page logged errors");
  await alice.context.close();
  await bob.context.close();
}

test("the console works on a phone-sized screen and by keyboard", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
  const page = await context.newPage();
  await page.goto(base);
  await page.keyboard.press("Tab");
  await page.keyboard.type("cli");
  await page.keyboard.press("Tab");
  await page.keyboard.type("tapir-dev");
  await page.keyboard.press("Enter");
  await page.locator("#lines tbody tr").first().waitFor(WAIT);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than the screen`);
  await page.screenshot({ path: join(SHOTS, "phone.png"), fullPage: true });
  await page.getByRole("button", { name: "Log off" }).click();
  await context.close();
});
