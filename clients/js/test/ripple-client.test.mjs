// Unit tests of the Ripple client against a fake socket and fake timers:
// `node --test clients/js/test/`
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RippleClient, LruSet, backoffDelay, timeCursor, SUBPROTOCOL } from '../ripple-client.js';

/** Timers driven by hand: `advance(ms)` runs whatever falls due, in order. */
class FakeTimers {
  constructor() {
    this.now = 0;
    this.nextId = 1;
    this.tasks = new Map();
  }

  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.tasks.set(id, { fn, at: this.now + Math.max(0, ms), every: null });
    return id;
  }

  setInterval(fn, ms) {
    const id = this.nextId++;
    this.tasks.set(id, { fn, at: this.now + ms, every: ms });
    return id;
  }

  clearTimeout(id) {
    this.tasks.delete(id);
  }

  clearInterval(id) {
    this.tasks.delete(id);
  }

  /** Delays of the pending one-shot timers. */
  pendingDelays() {
    return [...this.tasks.values()].filter((t) => t.every === null).map((t) => t.at - this.now);
  }

  async advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.tasks.entries()]
        .filter(([, t]) => t.at <= until)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      const [id, task] = due;
      this.now = task.at;
      if (task.every === null) this.tasks.delete(id);
      else task.at += task.every;
      task.fn();
      await flush();
    }
    this.now = until;
  }
}

/** Lets pending promise callbacks (token fetch, request settlement) run. */
async function flush() {
  for (let i = 0; i < 5; i += 1) await Promise.resolve();
}

/** A WebSocket double: records what the client sends; the test opens, feeds and closes it. */
function fakeSocketClass() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }

    send(text) {
      assert.equal(this.readyState, 1, 'send on an open socket only');
      this.sent.push(JSON.parse(text));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.serverClose(code, reason);
    }

    // ---- test side ----
    serverOpen() {
      this.readyState = 1;
      this.onopen?.({});
    }

    serverSend(event) {
      this.onmessage?.({ data: JSON.stringify(event) });
    }

    serverClose(code = 1006, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    frames(action) {
      return this.sent.filter((frame) => frame.action === action);
    }
  }
  return { FakeSocket, sockets };
}

function setup(options = {}) {
  const timers = new FakeTimers();
  const { FakeSocket, sockets } = fakeSocketClass();
  let tokenCalls = 0;
  const client = new RippleClient({
    url: 'wss://ws.ripple.test/prod',
    token: () => `token-${++tokenCalls}`,
    WebSocket: FakeSocket,
    timers,
    now: () => timers.now,
    random: () => 1,
    ...options,
  });
  return { client, timers, sockets, tokenCalls: () => tokenCalls };
}

function event(type, data, extra = {}) {
  return { type, event_id: extra.event_id ?? `${type}-${Math.random()}`, occurred_at: '2025-01-01T00:00:00.000Z', data, ...extra };
}

const CURSOR_1 = '01890a5d-ac96-774b-bcce-b302099a8057';
const CURSOR_2 = '01890a5d-ac97-7000-8000-000000000001';

test('connects with the ripple.v1 subprotocol and the token, never in the URL', async () => {
  const { client, sockets } = setup();
  client.connect();
  await flush();
  assert.equal(sockets.length, 1);
  assert.deepEqual(sockets[0].protocols, [SUBPROTOCOL, 'token-1']);
  assert.equal(sockets[0].url, 'wss://ws.ripple.test/prod');
});

test('delivers each event_id once, and the dedupe set is bounded (LRU)', async () => {
  const { client, sockets } = setup({ dedupeCapacity: 2 });
  const received = [];
  client.on('new_notification', (data) => received.push(data.id));
  client.connect();
  await flush();
  sockets[0].serverOpen();
  const a = event('new_notification', { id: 'a' }, { event_id: 'ea' });
  const b = event('new_notification', { id: 'b' }, { event_id: 'eb' });
  const c = event('new_notification', { id: 'c' }, { event_id: 'ec' });
  for (const e of [a, a, b, a, c, a]) sockets[0].serverSend(e);
  assert.deepEqual(received, ['a', 'b', 'c'], 'repeats dropped');
  // 'b' was the least recently seen when 'c' arrived and fell out of the 2-entry set.
  sockets[0].serverSend(b);
  assert.deepEqual(received, ['a', 'b', 'c', 'b']);

  const lru = new LruSet(2);
  assert.equal(lru.add('x'), true);
  assert.equal(lru.add('x'), false);
  lru.add('y');
  lru.add('z');
  assert.equal(lru.has('x'), false);
  assert.equal(lru.size, 2);
});

test('reconnects with exponential backoff, capped, with jitter, reset by a working connection', async () => {
  const settings = { initialBackoffMs: 500, maxBackoffMs: 4000, backoffFactor: 2 };
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => backoffDelay(n, settings, () => 1)), [500, 1000, 2000, 4000, 4000]);
  assert.deepEqual([0, 1, 2].map((n) => backoffDelay(n, settings, () => 0)), [250, 500, 1000]);

  const { client, timers, sockets, tokenCalls } = setup({ maxBackoffMs: 4000 });
  const reconnecting = [];
  client.on('reconnecting', (info) => reconnecting.push(info.delayMs));
  client.connect();
  await flush();
  for (let i = 0; i < 4; i += 1) {
    sockets.at(-1).serverClose(1006);
    await timers.advance(reconnecting.at(-1));
  }
  assert.deepEqual(reconnecting, [500, 1000, 2000, 4000]);
  assert.equal(sockets.length, 5);
  assert.equal(tokenCalls(), 5, 'a fresh token for every attempt');

  sockets.at(-1).serverOpen();
  sockets.at(-1).serverSend(event('pong', { server_time: '2025-01-01T00:00:00.000Z' }));
  sockets.at(-1).serverClose(1001);
  assert.equal(reconnecting.at(-1), 500, 'back to the first delay');
  client.close();
  await timers.advance(10_000);
  assert.equal(sockets.length, 5, 'no reconnection after close()');
});

test('resumes from the latest cursor after a reconnection and reports gaps', async () => {
  const { client, timers, sockets } = setup();
  const gaps = [];
  client.on('gap', (data) => gaps.push(data));
  client.connect();
  await flush();
  sockets[0].serverOpen();
  assert.equal(sockets[0].frames('resume').length, 0, 'nothing to resume on a first connection');
  sockets[0].serverSend(event('new_message', { id: 'm2' }, { cursor: CURSOR_2 }));
  sockets[0].serverSend(event('new_notification', { id: 'n1' }, { cursor: CURSOR_1 }));
  assert.equal(client.cursor, CURSOR_2, 'the latest cursor, not the last one received');

  sockets[0].serverClose(1006);
  await timers.advance(500);
  sockets[1].serverOpen();
  const [resume] = sockets[1].frames('resume');
  assert.equal(resume.since, CURSOR_2);
  const resumedCursor = '01890a5d-ac98-7000-8000-000000000000';
  sockets[1].serverSend(event('resumed', { gap: true, replayed: 0, feed_new_posts: 0, request_id: resume.request_id }, { cursor: resumedCursor }));
  assert.equal(gaps.length, 1);
  assert.equal(client.cursor, resumedCursor);
});

test('without a cursor the first pong gives the resume position', async () => {
  const { client, timers, sockets } = setup();
  client.connect();
  await flush();
  sockets[0].serverOpen();
  const [ping] = sockets[0].frames('ping');
  assert.ok(ping, 'a ping asks for the server time');
  sockets[0].serverSend(event('pong', { server_time: '2025-01-01T00:00:00.000Z', request_id: ping.request_id }));
  assert.equal(client.cursor, timeCursor(Date.parse('2025-01-01T00:00:00.000Z')));
  sockets[0].serverClose(1006);
  await timers.advance(500);
  sockets[1].serverOpen();
  assert.equal(sockets[1].frames('resume')[0].since, client.cursor);
});

test('pings every 5 minutes and replaces the connection before the 2-hour cap', async () => {
  const { client, timers, sockets } = setup();
  client.connect();
  await flush();
  sockets[0].serverOpen();
  await timers.advance(5 * 60 * 1000);
  assert.equal(sockets[0].frames('ping').length, 2, 'the opening ping and one keep-alive');
  await timers.advance(5 * 60 * 1000);
  assert.equal(sockets[0].frames('ping').length, 3);

  sockets[0].serverSend(event('new_message', { id: 'm' }, { cursor: CURSOR_1 }));
  await timers.advance(100 * 60 * 1000);
  assert.equal(sockets.length, 2, 'a replacement is opening');
  assert.equal(sockets[0].closedWith, null, 'the old socket stays until the new one is open');
  sockets[1].serverOpen();
  assert.deepEqual(sockets[0].closedWith, { code: 1000, reason: 'rotated' });
  assert.equal(sockets[1].frames('resume')[0].since, CURSOR_1);
  assert.ok(client.connected);
  await timers.advance(60 * 1000);
  assert.equal(sockets.length, 2, 'closing the rotated socket does not trigger a reconnection');
  client.close();
});

test('subscriptions resolve on their reply, reject on error, and are restored after reconnection', async () => {
  const { client, timers, sockets } = setup();
  client.connect();
  await flush();
  sockets[0].serverOpen();
  const ok = client.subscribe('post:p1');
  const refused = client.subscribe('post:p2');
  const [first, second] = sockets[0].frames('subscribe');
  sockets[0].serverSend(event('subscribed', { channel: 'post:p1', request_id: first.request_id }));
  sockets[0].serverSend(event('error', { code: 'forbidden', message: 'private', request_id: second.request_id }));
  assert.equal((await ok).type, 'subscribed');
  await assert.rejects(refused, (error) => error.code === 'forbidden');

  sockets[0].serverClose(1006);
  await timers.advance(500);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].frames('subscribe').map((f) => f.channel), ['post:p1']);
});

test('typing goes out at most once per second, keeping the latest state', async () => {
  const { client, timers, sockets } = setup();
  client.connect();
  await flush();
  sockets[0].serverOpen();
  client.typing('bob', 'start');
  client.typing('bob', 'stop');
  client.typing('bob', 'start');
  assert.deepEqual(sockets[0].frames('typing').map((f) => f.state), ['start']);
  client.typing('bob', 'stop');
  await timers.advance(999);
  assert.equal(sockets[0].frames('typing').length, 1);
  await timers.advance(1);
  assert.deepEqual(sockets[0].frames('typing').map((f) => [f.to, f.state]), [['bob', 'start'], ['bob', 'stop']]);
});

test('timeCursor is the smallest UUIDv7 of its millisecond', () => {
  const cursor = timeCursor(0x018bcfe56800);
  assert.equal(cursor, '018bcfe5-6800-7000-8000-000000000000');
  assert.ok(cursor < '018bcfe5-6800-7000-8000-000000000001');
  assert.ok(cursor > '018bcfe5-67ff-7fff-bfff-ffffffffffff');
});
