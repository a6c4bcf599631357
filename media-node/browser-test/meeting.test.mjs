// Two real browsers (Debian's headless Chromium, fake camera and microphone) meet on a real
// `ruche-media-node` through its demo page: each must decode the other's video, receive the
// other's audio and get the other's chat, while the admin API counts them.
//
// Run with `node --test meeting.test.mjs` (run.sh installs and builds what it needs first).
// Env: RUCHE_MEDIA_NODE (the binary; default ../../target/debug/ruche-media-node from here),
// CHROMIUM (default /usr/bin/chromium), RUST_LOG (the node's log filter),
// MEETING_TIMEOUT_MS (how long media may take to flow; default 30000), RUCHE_NODE_LOG (a file
// to write the node's whole output to, pass or fail).

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const BINARY = path.resolve(here, process.env.RUCHE_MEDIA_NODE || "../../target/debug/ruche-media-node");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MEDIA_TIMEOUT_MS = Number(process.env.MEETING_TIMEOUT_MS || 30_000);
const ROOM = "browser-test";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--allow-loopback-in-peer-connection",
  // Keep three simulcast layers whatever the capture size once CPU adaptation shrinks it
  // (the default caps the layer count by resolution, down to one at 320x180).
  "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/",
];

// run.sh runs the test in a network namespace of its own when it can (as root): then the test
// may shape loopback with tc and block UDP with iptables without touching the machine.
const NETNS = process.env.RUCHE_BROWSER_NETNS === "1";
const NEEDS_NETNS = NETNS ? false : "needs a network namespace of its own: run.sh as root gives it one";
// The rate a shaped subscriber's link is cut to: room for the low layer and audio (Chromium's
// fake camera sends about 80, 130 and 260 kbit/s on its three layers, and Opus about 50), not
// for the middle layer.
const SHAPED_RATE = "180kbit";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const elapsed = (since) => `${((Date.now() - since) / 1000).toFixed(1)} s`;

/** A TCP port free on 127.0.0.1 right now. */
function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** A UDP port free on 127.0.0.1 right now. */
function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

/** Distinct free ports: `count` TCP ones and one UDP one. */
async function freePorts(count) {
  const tcp = new Set();
  while (tcp.size < count) tcp.add(await freeTcpPort());
  return { tcp: [...tcp], udp: await freeUdpPort() };
}

/** Polls `probe` until its result is `ok` (or `done`: no use waiting); returns the last result. */
async function poll(probe, { timeoutMs, intervalMs = 250 }) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await probe();
    if (last.ok || last.done || Date.now() >= deadline) return last;
    await sleep(intervalMs);
  }
}

// Everything the test starts, and what it saw, for the failure report.
const run = {
  node: null,
  nodeLog: [],
  nodeExit: null,
  tmp: null,
  browser: null,
  pages: [],
  started: Date.now(),
  reported: false,
};

function nodeOutput() {
  return run.nodeLog.join("");
}

function report(error) {
  if (run.reported) return;
  run.reported = true;
  const out = [];
  out.push(`\n===== browser meeting test failed after ${elapsed(run.started)}: ${error?.message ?? error}`);
  for (const p of run.pages) {
    out.push(`----- console of page ${p.name} (${p.console.length} lines)`);
    out.push(...p.console);
  }
  out.push(`----- ruche-media-node output${run.nodeExit ? ` (exited: ${run.nodeExit})` : ""}`);
  out.push(nodeOutput());
  out.push("===== end of the failure report\n");
  console.error(out.join("\n"));
}

/** A test that dumps the pages' consoles and the node's output when it fails. */
function step(name, options, fn) {
  test(name, options, async (t) => {
    try {
      await fn(t);
    } catch (error) {
      report(error);
      throw error;
    }
  });
}

function stopNode() {
  const child = run.node;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

// If the test process dies anyway, take the node down with it.
process.on("exit", () => {
  if (run.node && run.node.exitCode === null && run.node.signalCode === null) run.node.kill("SIGKILL");
});

async function startNode() {
  assert.ok(
    fs.existsSync(BINARY),
    `no ruche-media-node binary at ${BINARY}: build it (cargo build -p ruche-media-node) or set RUCHE_MEDIA_NODE`,
  );
  run.tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ruche-browser-test-"));
  const tokenKeyFile = path.join(run.tmp, "token-key");
  const adminTokenFile = path.join(run.tmp, "admin-token");
  // 40 random alphanumeric characters: an HMAC secret over the node's 32-byte minimum.
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const secret = [...randomBytes(40)].map((b) => alphabet[b % alphabet.length]).join("");
  const adminToken = randomBytes(24).toString("hex");
  fs.writeFileSync(tokenKeyFile, secret + "\n", { mode: 0o600 });
  fs.writeFileSync(adminTokenFile, adminToken + "\n", { mode: 0o600 });

  const { tcp: [httpPort, adminPort], udp: mediaPort } = await freePorts(2);
  const args = [
    "--dev",
    "--media-bind", `127.0.0.1:${mediaPort}`,
    "--http-bind", `127.0.0.1:${httpPort}`,
    "--admin-bind", `127.0.0.1:${adminPort}`,
    "--token-key-file", tokenKeyFile,
    "--admin-token-file", adminTokenFile,
    "--drain-timeout-seconds", "2",
  ];
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || "ruche_media_node=debug,rtc=info", NO_COLOR: "1" };
  console.log(`starting ${BINARY} ${args.join(" ")}`);
  const child = spawn(BINARY, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  run.node = child;
  child.stdout.setEncoding("utf8").on("data", (d) => run.nodeLog.push(d));
  child.stderr.setEncoding("utf8").on("data", (d) => run.nodeLog.push(d));
  child.on("exit", (code, signal) => {
    run.nodeExit = signal ? `signal ${signal}` : `code ${code}`;
  });
  child.on("error", (e) => {
    run.nodeExit = `cannot start: ${e.message}`;
  });

  const base = `http://127.0.0.1:${httpPort}`;
  const healthy = await poll(
    async () => {
      if (run.nodeExit) return { ok: false, done: true };
      try {
        const r = await fetch(`${base}/healthz`);
        return { ok: r.ok };
      } catch {
        return { ok: false };
      }
    },
    { timeoutMs: 15_000, intervalMs: 100 },
  );
  assert.ok(healthy.ok, `the node did not answer ${base}/healthz (${run.nodeExit ?? "still running"})`);
  return { base, admin: `http://127.0.0.1:${adminPort}`, adminToken, mediaPort };
}

/** Runs a network tool of the test's namespace; throws with its output when it fails. */
function net_(tool, args) {
  return execFileSync(tool, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Cuts what loopback delivers to UDP port `port` to `rate` (with a short queue, as a
 *  congested access link has), leaving all other traffic alone. */
function shape(port, rate) {
  net_("tc", ["qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10"]);
  net_("tc", ["class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit"]);
  net_("tc", ["class", "add", "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", rate, "ceil", rate]);
  net_("tc", ["qdisc", "add", "dev", "lo", "parent", "1:20", "handle", "20:", "pfifo", "limit", "50"]);
  net_("tc", ["filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
    "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", String(port), "0xffff", "flowid", "1:20"]);
}

function unshape() {
  try {
    net_("tc", ["qdisc", "del", "dev", "lo", "root"]);
  } catch {
    // Nothing shaped.
  }
}

/** The local end (port, protocol) of a page's connection's selected candidate pair. */
function transportOf(page, which) {
  return page.evaluate(async (which) => {
    const pc = window.ruche[which];
    if (!pc) return null;
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    const pair = pairId && stats.get(pairId);
    const local = pair && stats.get(pair.localCandidateId);
    return local ? { port: local.port, protocol: local.protocol } : null;
  }, which);
}

async function openPage(name, url, room = ROOM) {
  const context = await run.browser.newContext({ permissions: ["camera", "microphone"] });
  const page = await context.newPage();
  const entry = { name, page, console: [] };
  const stamp = () => `[${elapsed(run.started)}]`;
  page.on("console", (m) => entry.console.push(`${stamp()} ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => entry.console.push(`${stamp()} pageerror: ${e.message}`));
  page.on("crash", () => entry.console.push(`${stamp()} the page crashed`));
  run.pages.push(entry);
  await page.goto(url);
  await page.fill("#room", room);
  await page.fill("#name", name);
  // The page logs what it does in #log; mirror it into the console record.
  await page.evaluate(() => {
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) console.log("[page log] " + n.textContent);
    }).observe(document.getElementById("log"), { childList: true });
  });
  return page;
}

describe("two Chromium pages in one room on ruche-media-node", { timeout: 120_000 }, () => {
  let node;
  let alice;
  let bob;

  before(async () => {
    try {
      assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install chromium (or set CHROMIUM)`);
      node = await startNode();
      run.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
      console.log(`node up, ${CHROMIUM} ${run.browser.version()} launched after ${elapsed(run.started)}`);
      alice = await openPage("alice", `${node.base}/`);
      bob = await openPage("bob", `${node.base}/`);
    } catch (error) {
      report(error);
      throw error;
    }
  });

  after(async () => {
    await run.browser?.close().catch(() => {});
    await stopNode();
    if (process.env.RUCHE_NODE_LOG) fs.writeFileSync(process.env.RUCHE_NODE_LOG, nodeOutput());
    if (run.tmp) fs.rmSync(run.tmp, { recursive: true, force: true });
  });

  step("both join the room and the admin API counts 2 participants in 1 room", { timeout: 30_000 }, async () => {
    await alice.click("#join");
    await alice.waitForFunction(() => window.ruche.me !== null, null, { timeout: 15_000 });
    await bob.click("#join");
    await bob.waitForFunction(() => window.ruche.me !== null, null, { timeout: 15_000 });
    const status = await poll(
      async () => {
        const r = await fetch(`${node.admin}/v1/status`, { headers: { Authorization: `Bearer ${node.adminToken}` } });
        assert.equal(r.status, 200, `GET /v1/status answered ${r.status}: ${await r.clone().text()}`);
        const body = await r.json();
        return { ok: body.participants === 2 && body.rooms === 1, body };
      },
      { timeoutMs: 10_000 },
    );
    assert.equal(status.body.participants, 2, `status: ${JSON.stringify(status.body)}`);
    assert.equal(status.body.rooms, 1, `status: ${JSON.stringify(status.body)}`);
    assert.equal(status.body.phase, "Ready", `status: ${JSON.stringify(status.body)}`);
    // Without the bearer token the admin API refuses.
    const refused = await fetch(`${node.admin}/v1/status`);
    assert.equal(refused.status, 401);
  });

  step("each page decodes the other's video and receives its audio", { timeout: MEDIA_TIMEOUT_MS + 10_000 }, async () => {
    const since = Date.now();
    const inbound = (page) => page.evaluate(() => window.ruche.inbound());
    const result = await poll(
      async () => {
        const [a, b] = await Promise.all([inbound(alice), inbound(bob)]);
        const flowing = (s) => s.framesDecoded > 0 && s.audioBytes > 0;
        return { ok: flowing(a) && flowing(b), alice: a, bob: b };
      },
      { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 500 },
    );
    console.log(`media after ${elapsed(since)}: alice ${JSON.stringify(result.alice)}, bob ${JSON.stringify(result.bob)}`);
    for (const who of ["alice", "bob"]) {
      const s = result[who];
      assert.ok(s.video >= 1 && s.audio >= 1, `${who} has no inbound video or audio stream: ${JSON.stringify(s)}`);
      assert.ok(s.framesDecoded > 0, `${who} decoded no video frame in ${MEDIA_TIMEOUT_MS} ms: ${JSON.stringify(s)}`);
      assert.ok(s.audioBytes > 0, `${who} received no audio in ${MEDIA_TIMEOUT_MS} ms: ${JSON.stringify(s)}`);
    }
    // Frames keep coming: the stream is live, not one keyframe and a stall. A delta frame lost
    // on a loaded machine stalls the decoder until the next keyframe (a PLI round trip), so
    // the stream gets a few seconds to move on, not one.
    const before = (await inbound(alice)).framesDecoded;
    const later = await poll(
      async () => {
        const s = await inbound(alice);
        return { ...s, ok: s.framesDecoded > before + 1 };
      },
      { timeoutMs: 5_000, intervalMs: 250 },
    );
    assert.ok(later.framesDecoded > before + 1, `alice's decoded frames stalled at ${before} for 5 s: ${JSON.stringify(later)}`);
  });

  step("each announced track maps to its receiver through the subscribe offer's msid and mid", { timeout: 15_000 }, async () => {
    const tracks = await bob.evaluate(() =>
      (window.ruche.tracks || []).map((t) => ({ ...t, found: window.ruche.receiverOf(t.track)?.track.kind ?? null })),
    );
    console.log(`bob's announced tracks: ${JSON.stringify(tracks)}`);
    const audio = tracks.filter((t) => t.kind === "audio");
    const video = tracks.filter((t) => t.kind === "video");
    assert.ok(audio.length >= 1 && video.length >= 1, `bob was told of ${JSON.stringify(tracks)}`);
    for (const t of audio) assert.deepEqual(t.layers, [], `an audio track has no simulcast layers: ${JSON.stringify(t)}`);
    for (const t of video) assert.ok(t.layers.length >= 1, `alice's video is simulcast: ${JSON.stringify(t)}`);
    for (const t of tracks) assert.equal(t.found, t.kind, `track ${t.track} maps to a ${t.found} receiver, not ${t.kind}`);
  });

  const width = async (page) => (await page.evaluate(() => window.ruche.inbound())).frameWidth;
  const sent = (page) => page.evaluate(() => window.ruche.outbound());
  const widths = (layers) => layers.map((l) => `${l.rid}:${l.width}`).join(" ") || "none";
  // The node can only pick among the layers the publisher's browser sends right now, and
  // Chromium drops layers when short of CPU or bandwidth: judge what `to` decodes against
  // what `from` sends at that moment, once `from` sends at least two sizes.
  const judge = (to, from, want, timeoutMs = 25_000) =>
    poll(
      async () => {
        const [w, layers] = await Promise.all([width(to), sent(from)]);
        const sizes = layers.map((l) => l.width);
        return { ok: new Set(sizes).size >= 2 && want(w, sizes), w, layers };
      },
      { timeoutMs, intervalMs: 250 },
    );
  const highest = (w, sizes) => w === Math.max(...sizes);
  const lowest = (w, sizes) => w === Math.min(...sizes);

  step("a subscriber gets the simulcast layer it asks for, the other keeps the best", { timeout: 120_000 }, async () => {
    const best = await judge(bob, alice, highest);
    assert.ok(best.ok, `with no preference bob decodes ${best.w} px, not the best of alice's layers (${widths(best.layers)})`);
    console.log(`bob decodes alice's video at ${best.w} px with no preference (alice sends ${widths(best.layers)})`);
    await bob.evaluate(() => window.ruche.setLayer("low"));
    const low = await judge(bob, alice, lowest);
    assert.ok(low.ok, `bob asked for the low layer but decodes ${low.w} px (alice sends ${widths(low.layers)})`);
    console.log(`after asking for the low layer: ${low.w} px (alice sends ${widths(low.layers)})`);
    const other = await judge(alice, bob, highest);
    assert.ok(other.ok, `alice asked for nothing but decodes ${other.w} px, not the best of bob's layers (${widths(other.layers)})`);
    await bob.evaluate(() => window.ruche.setLayer(null));
    const back = await judge(bob, alice, highest);
    assert.ok(back.ok, `bob went back to no preference but decodes ${back.w} px (alice sends ${widths(back.layers)})`);
    console.log(`back to the best layer: ${back.w} px`);
  });

  step("a subscriber on a congested link drops to the low layer within seconds, the other keeps the best, and it climbs back once the link is clear", { timeout: 150_000, skip: NEEDS_NETNS }, async () => {
    const before = await judge(bob, alice, highest);
    assert.ok(before.ok, `bob decodes ${before.w} px before the shaping, not the best of ${widths(before.layers)}`);
    const local = await transportOf(bob, "sub");
    assert.ok(local?.protocol === "udp", `bob's subscribe connection: ${JSON.stringify(local)}`);
    const since = Date.now();
    shape(local.port, SHAPED_RATE);
    console.log(`${new Date().toISOString()}: bob's link (UDP port ${local.port}) cut to ${SHAPED_RATE}`);
    try {
      const low = await judge(bob, alice, lowest, 20_000);
      assert.ok(low.ok, `bob's link is cut to ${SHAPED_RATE} but he decodes ${low.w} px after ${elapsed(since)} (alice sends ${widths(low.layers)})`);
      console.log(`bob's link cut to ${SHAPED_RATE}: he decodes the low layer (${low.w} px) ${elapsed(since)} later`);
      const other = await judge(alice, bob, highest);
      assert.ok(other.ok, `alice's link is clear but she decodes ${other.w} px, not the best of bob's layers (${widths(other.layers)})`);
      console.log(`meanwhile alice decodes bob's best layer (${other.w} px)`);
    } finally {
      unshape();
    }
    const cleared = Date.now();
    console.log(`${new Date().toISOString()}: bob's link clear again`);
    const back = await judge(bob, alice, highest, 90_000);
    assert.ok(back.ok, `bob's link is clear again but he decodes ${back.w} px after ${elapsed(cleared)} (alice sends ${widths(back.layers)})`);
    console.log(`link clear: bob back on the best layer (${back.w} px) ${elapsed(cleared)} later`);
  });

  /** `from` types `text` in its chat form and sends it; returns what `to` receives. */
  async function chat(from, to, text) {
    // The page drops a message while its channel is not open: wait for both channels.
    await from.waitForFunction(() => window.ruche.chatOut?.readyState === "open", null, { timeout: 10_000 });
    await to.waitForFunction(() => window.ruche.chat?.readyState === "open", null, { timeout: 10_000 });
    await from.fill("#message", text);
    await from.click("#chat button");
    const got = await to.waitForFunction(
      (t) => (window.ruche.received || []).find((m) => m.text === t) || null,
      text,
      { timeout: 10_000 },
    );
    assert.equal(await from.inputValue("#message"), "", "the page clears the field once sent");
    return got.jsonValue();
  }

  step("a chat message from alice reaches bob, and bob's reply reaches alice", { timeout: 30_000 }, async () => {
    const hello = `hello from alice ${randomBytes(4).toString("hex")}`;
    const toBob = await chat(alice, bob, hello);
    assert.equal(toBob.text, hello);
    assert.equal(toBob.name, "alice");
    const reply = `hi alice, bob here ${randomBytes(4).toString("hex")}`;
    const toAlice = await chat(bob, alice, reply);
    assert.equal(toAlice.text, reply);
    assert.equal(toAlice.name, "bob");
    // Nobody receives their own message back.
    const own = await alice.evaluate((t) => (window.ruche.received || []).some((m) => m.text === t), hello);
    assert.equal(own, false, "alice got her own message back");
  });

  step("closing the room ends both sessions with a close frame, and the pages close their peer connections", { timeout: 30_000 }, async () => {
    const r = await fetch(`${node.admin}/v1/rooms/${ROOM}`, { method: "DELETE", headers: { Authorization: `Bearer ${node.adminToken}` } });
    assert.equal(r.status, 200, `DELETE /v1/rooms/${ROOM} answered ${r.status}: ${await r.clone().text()}`);
    for (const [who, page] of [["alice", alice], ["bob", bob]]) {
      await page.waitForFunction(() => window.ruche.ended !== null, null, { timeout: 10_000 });
      const seen = await page.evaluate(() => ({ ended: window.ruche.ended, error: window.ruche.lastError, pcs: window.ruche.closedStates, pub: window.ruche.pub, sub: window.ruche.sub }));
      console.log(`${who}: ${JSON.stringify(seen)}`);
      assert.deepEqual(seen.ended, { code: 4002, reason: "room closed" }, `${who}'s socket did not close with 4002: ${JSON.stringify(seen)}`);
      assert.equal(seen.error?.code, "room_closed", `${who}'s last error: ${JSON.stringify(seen.error)}`);
      assert.deepEqual(seen.pcs, ["closed", "closed"], `${who}'s peer connections: ${JSON.stringify(seen.pcs)}`);
      assert.equal(seen.pub, null);
      assert.equal(seen.sub, null);
    }
  });
  step("participants whose UDP is blocked join over TCP on the media port and decode each other's video", { timeout: 90_000, skip: NEEDS_NETNS }, async () => {
    const rule = ["INPUT", "-p", "udp", "-j", "DROP"];
    net_("iptables", ["-I", ...rule]);
    try {
      const room = `${ROOM}-tcp`;
      const carol = await openPage("carol", `${node.base}/`, room);
      const dave = await openPage("dave", `${node.base}/`, room);
      for (const page of [carol, dave]) {
        await page.click("#join");
        await page.waitForFunction(() => window.ruche.me !== null, null, { timeout: 15_000 });
      }
      const since = Date.now();
      const inbound = (page) => page.evaluate(() => window.ruche.inbound());
      const result = await poll(
        async () => {
          const [c, d] = await Promise.all([inbound(carol), inbound(dave)]);
          return { ok: c.framesDecoded > 0 && d.framesDecoded > 0, carol: c, dave: d };
        },
        { timeoutMs: MEDIA_TIMEOUT_MS, intervalMs: 500 },
      );
      assert.ok(result.ok, `with UDP blocked: carol ${JSON.stringify(result.carol)}, dave ${JSON.stringify(result.dave)}`);
      const transports = await Promise.all([transportOf(carol, "pub"), transportOf(carol, "sub"), transportOf(dave, "sub")]);
      for (const t of transports) assert.equal(t?.protocol, "tcp", `a connection is not on TCP: ${JSON.stringify(transports)}`);
      const r = await fetch(`${node.admin}/metrics`, { headers: { Authorization: `Bearer ${node.adminToken}` } });
      const open = Number((await r.text()).match(/^ruche_media_tcp_connections (\d+)/m)?.[1] ?? 0);
      assert.ok(open >= 3, `the node holds ${open} ICE-over-TCP connections`);
      console.log(`UDP blocked: carol and dave decode each other's video over TCP ${elapsed(since)} after joining (${open} TCP connections on the node)`);
    } finally {
      net_("iptables", ["-D", ...rule]);
    }
  });
});
