// Unit tests of the Ripple client against a fake socket and fake timers:
// `node --test clients/js/test/`
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { RippleClient, LatestState, LruSet, backoffDelay, postVersion, timeCursor, SUBPROTOCOL } from '../ripple-client.js';

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

// ---- issue 12: delivery guarantees ------------------------------------------------------------

/** Lets every pending promise callback run (polls chain several awaits). */
const drain = () => new Promise((resolve) => setImmediate(resolve));

const CURSOR_3 = '01890a5d-ac98-7000-8000-000000000003';
const CURSOR_4 = '01890a5d-ac99-7000-8000-000000000004';

/** Connects, opens the first socket and moves the cursor to CURSOR_1. */
async function connected(options) {
  const context = setup(options);
  context.client.connect();
  await flush();
  context.sockets[0].serverOpen();
  context.sockets[0].serverSend(event('new_message', { id: 'm1' }, { event_id: 'e-m1', cursor: CURSOR_1 }));
  return context;
}

test('replay frames are unpacked in order and each event handled like a live one', async () => {
  const { client, timers, sockets } = await connected();
  const received = [];
  const types = [];
  client.on('event', (e) => types.push(e.type));
  client.on('new_message', (data) => received.push(data.id));
  client.on('new_notification', (data) => received.push(data.id));
  client.on('replay', () => assert.fail('a replay frame is not an app event'));
  sockets[0].serverClose(1006);
  await timers.advance(500);
  sockets[1].serverOpen();
  const [resume] = sockets[1].frames('resume');
  assert.equal(resume.since, CURSOR_1);
  const replay = (events) => ({
    type: 'replay',
    event_id: `replay-${Math.random()}`,
    occurred_at: '2025-01-01T00:00:00.000Z',
    data: { request_id: resume.request_id, events },
  });
  sockets[1].serverSend(replay([
    event('new_message', { id: 'm1' }, { event_id: 'e-m1', cursor: CURSOR_1 }), // seen live: dropped
    event('new_notification', { id: 'n2' }, { event_id: 'e-n2', cursor: CURSOR_2 }),
    event('new_message', { id: 'm4' }, { event_id: 'e-m4', cursor: CURSOR_4 }),
  ]));
  sockets[1].serverSend(replay([
    event('new_notification', { id: 'n3' }, { event_id: 'e-n3', cursor: CURSOR_3 }),
    event('new_notification', { id: 'n2' }, { event_id: 'e-n2', cursor: CURSOR_2 }), // twice in a replay
  ]));
  assert.deepEqual(received, ['n2', 'm4', 'n3'], 'in order, each once');
  assert.equal(client.cursor, CURSOR_4, 'the greatest cursor of the replayed events');
  sockets[1].serverSend(event('resumed', { gap: false, replayed: 4, feed_new_posts: 0, request_id: resume.request_id }, { cursor: CURSOR_4 }));
  assert.deepEqual(types, ['new_notification', 'new_message', 'new_notification', 'resumed']);
});

test('an unauthorized answer drops the socket, reconnects with backoff and resumes', async () => {
  const { client, timers, sockets } = await connected();
  const reconnecting = [];
  const errors = [];
  client.on('reconnecting', (info) => reconnecting.push(info.delayMs));
  client.on('error', (data) => errors.push(data.code));
  const subscribed = client.subscribe('post:p1');
  sockets[0].serverSend(event('subscribed', { channel: 'post:p1', request_id: sockets[0].frames('subscribe')[0].request_id }));
  await subscribed;

  await timers.advance(5 * 60 * 1000); // the keep-alive ping
  const ping = sockets[0].frames('ping').at(-1);
  sockets[0].serverSend(event('error', { code: 'unauthorized', message: 'connection not registered', request_id: ping.request_id }));
  assert.deepEqual(errors, ['unauthorized'], 'the app still sees the error');
  assert.deepEqual(sockets[0].closedWith, { code: 4001, reason: 'unauthorized' });
  assert.equal(client.connected, false);
  assert.deepEqual(reconnecting, [500], 'the normal backoff, from its first step');
  await timers.advance(499);
  assert.equal(sockets.length, 1, 'no immediate reconnection');
  await timers.advance(1);
  assert.equal(sockets.length, 2);
  sockets[1].serverOpen();
  assert.equal(sockets[1].frames('resume')[0].since, CURSOR_1, 'resumes from its cursor');
  assert.deepEqual(sockets[1].frames('subscribe').map((f) => f.channel), ['post:p1'], 'channels restored');

  // A server that disowns the new connection too: the backoff grows instead of looping.
  const resume = sockets[1].frames('resume')[0];
  sockets[1].serverSend(event('error', { code: 'unauthorized', message: 'gone', request_id: resume.request_id }));
  assert.deepEqual(reconnecting, [500, 1000]);
  // Frames still arriving on the dropped socket are ignored.
  sockets[1].onmessage?.({ data: JSON.stringify(event('new_message', { id: 'late' }, { cursor: CURSOR_4 })) });
  assert.equal(client.cursor, CURSOR_1);
  client.close();
});

test('a subscription answered unauthorized is kept and sent again on the next socket', async () => {
  const { client, timers, sockets } = await connected();
  const refused = client.subscribe('post:p9');
  const [frame] = sockets[0].frames('subscribe');
  sockets[0].serverSend(event('error', { code: 'unauthorized', message: 'gone', request_id: frame.request_id }));
  await assert.rejects(refused, (error) => error.code === 'unauthorized');
  await timers.advance(500);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].frames('subscribe').map((f) => f.channel), ['post:p9']);
  client.close();
});

// ---- latest state wins ----

const post = (id, created, edited, text) => ({ id, author_id: 'u1', text, media_url: null, created_at: created, edited_at: edited, like_count: 0, comment_count: 0 });
const T0 = '2025-01-01T00:00:00.000Z';
const T1 = '2025-01-01T00:00:30.500Z';
const T2 = '2025-01-01T00:01:00.001Z';

test('LatestState: the newest version of a post wins, compared as times', () => {
  const state = new LatestState();
  assert.equal(postVersion(post('p', T0, null)), Date.parse(T0));
  assert.equal(postVersion(post('p', T0, T1)), Date.parse(T1));
  assert.equal(state.apply(event('post_created', post('p', T0, null, 'v0'))), true);
  assert.equal(state.apply(event('post_updated', post('p', T0, T2, 'v2'))), true);
  assert.equal(state.apply(event('post_updated', post('p', T0, T1, 'v1'))), false, 'an older edit arriving late');
  assert.equal(state.apply(event('post_created', post('p', T0, null, 'v0'))), false, 'the creation arriving after an edit');
  assert.equal(state.apply(event('post_updated', post('p', T0, T2, 'v2'))), true, 'the same version again is harmless');
  // Times, not strings: an offset spelling of a later instant still counts as later.
  assert.equal(state.apply(event('post_updated', post('p', T0, '2025-01-01T01:00:00.000+01:00', 'same instant as T0'))), false);
  // A REST answer older than what events said shows the newest content with its own counts.
  const rest = { ...post('p', T0, T1, 'v1'), like_count: 7, author: { id: 'u1' } };
  assert.deepEqual(state.observePost(rest), { ...rest, text: 'v2', edited_at: T2 });
  const newer = post('p', T0, '2025-01-01T00:02:00.000Z', 'v3');
  assert.equal(state.observePost(newer), newer, 'a newer REST answer is taken as it is');
  assert.equal(state.apply(event('post_updated', post('p', T0, T2, 'v2'))), false);
});

test('LatestState: like counts keep the greatest version; no version applies as before', () => {
  const state = new LatestState();
  const like = (count, version) => event('like_updated', version === undefined ? { post_id: 'p', like_count: count } : { post_id: 'p', like_count: count, version });
  assert.equal(state.apply(like(1, 1)), true);
  assert.equal(state.apply(like(0, 3)), true);
  assert.equal(state.apply(like(2, 2)), false, 'lower version');
  assert.equal(state.apply(like(0, 3)), false, 'equal version');
  assert.equal(state.apply(like(1, 4)), true);
  assert.equal(state.apply(like(5)), true, 'an older server without versions');
  assert.equal(state.apply({ type: 'like_updated', data: { post_id: 'other', like_count: 1, version: 1 } }), true, 'per post');
});

test('LatestState: nothing about a deleted post or comment comes back', () => {
  const state = new LatestState();
  assert.equal(state.apply(event('post_created', post('p', T0, null, 'x'))), true);
  assert.equal(state.apply(event('post_deleted', { post_id: 'p', author_id: 'u1' })), true);
  assert.equal(state.apply(event('post_deleted', { post_id: 'p', author_id: 'u1' })), false, 'already gone');
  assert.equal(state.apply(event('post_updated', post('p', T0, T2, 'late edit'))), false);
  assert.equal(state.apply(event('post_created', post('p', T0, null, 'x'))), false);
  assert.equal(state.apply(event('like_updated', { post_id: 'p', like_count: 3, version: 9 })), false);
  assert.equal(state.apply(event('like_updated', { post_id: 'p', like_count: 3 })), false);
  assert.equal(state.apply(event('new_comment', { id: 'c1', post_id: 'p', author_id: 'u2', text: 'hi', created_at: T1 })), false);
  assert.equal(state.observePost(post('p', T0, null, 'x')), null, 'a REST answer lagging behind the delete');
  assert.equal(state.isPostDeleted('p'), true);

  assert.equal(state.apply(event('new_comment', { id: 'c2', post_id: 'q' })), true);
  assert.equal(state.apply(event('comment_deleted', { post_id: 'q', comment_id: 'c2' })), true);
  assert.equal(state.apply(event('new_comment', { id: 'c2', post_id: 'q' })), false, 'a late copy of a deleted comment');
  assert.equal(state.isCommentDeleted('c2'), true);
  assert.equal(state.apply(event('new_message', { id: 'm' })), true, 'other types are not ordered');
});

test('LatestState: memory is bounded', () => {
  const state = new LatestState({ capacity: 2 });
  for (const id of ['a', 'b', 'c']) state.apply(event('post_deleted', { post_id: id }));
  assert.equal(state.isPostDeleted('a'), false, 'the oldest tombstone fell out');
  assert.equal(state.isPostDeleted('c'), true);
  for (const id of ['a', 'b', 'c']) state.apply(event('like_updated', { post_id: `l${id}`, like_count: 1, version: 5 }));
  assert.equal(state.apply(event('like_updated', { post_id: 'la', like_count: 1, version: 1 })), true, 'forgotten: news again');
  assert.equal(state.apply(event('like_updated', { post_id: 'lc', like_count: 1, version: 1 })), false);
});

test('the client emits only the latest state and reports the rest as stale', async () => {
  const { client, sockets } = await connected();
  const texts = [];
  const likes = [];
  const stale = [];
  client.on('post_updated', (data) => texts.push(data.text));
  client.on('like_updated', (data) => likes.push(data.like_count));
  client.on('stale', (e) => stale.push(e.type));
  sockets[0].serverSend(event('post_updated', post('p', T0, T2, 'new')));
  sockets[0].serverSend(event('post_updated', post('p', T0, T1, 'old')));
  sockets[0].serverSend(event('like_updated', { post_id: 'p', like_count: 2, version: 2 }));
  sockets[0].serverSend(event('like_updated', { post_id: 'p', like_count: 1, version: 1 }));
  sockets[0].serverSend(event('post_deleted', { post_id: 'p', author_id: 'u1' }));
  sockets[0].serverSend(event('like_updated', { post_id: 'p', like_count: 3, version: 3 }));
  assert.deepEqual(texts, ['new']);
  assert.deepEqual(likes, [2]);
  assert.deepEqual(stale, ['post_updated', 'like_updated', 'like_updated']);
  assert.ok(client.latest instanceof LatestState, 'apps feed their REST answers to the same rule');

  const unordered = await connected({ latestState: null });
  const all = [];
  unordered.client.on('post_updated', (data) => all.push(data.text));
  unordered.sockets[0].serverSend(event('post_updated', post('p', T0, T2, 'new')));
  unordered.sockets[0].serverSend(event('post_updated', post('p', T0, T1, 'old')));
  assert.deepEqual(all, ['new', 'old'], 'latestState: null turns ordering off');
});

// ---- catch-up without a socket ----

/** A fetch double: answers from `replies` in turn, records each call. */
function fakeFetch(replies) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url: new URL(url), init });
    const reply = replies.shift() ?? { status: 200, body: { events: [], cursor: null, gap: false, replayed: 0, feed_new_posts: 0 } };
    if (reply.throws) throw reply.throws;
    return { ok: reply.status >= 200 && reply.status < 300, status: reply.status, json: async () => reply.body };
  };
  return { fetch, calls };
}

test('after 3 failed connection attempts it polls GET /events until a socket opens', async () => {
  const replies = [
    {
      status: 200,
      body: {
        events: [
          event('new_message', { id: 'm1' }, { event_id: 'e-m1', cursor: CURSOR_1 }), // seen live
          event('new_notification', { id: 'n2' }, { event_id: 'e-n2', cursor: CURSOR_2 }),
        ],
        cursor: CURSOR_2, gap: false, replayed: 2, feed_new_posts: 1,
      },
    },
    { throws: new TypeError('network down') },
    { status: 200, body: { events: [], cursor: CURSOR_4, gap: true, replayed: 0, feed_new_posts: 0 } },
  ];
  const { fetch, calls } = fakeFetch(replies);
  const { client, timers, sockets } = await connected({ eventsUrl: 'https://api.ripple.test/events', fetch, pollIntervalMs: 15_000 });
  const received = [];
  const polled = [];
  const polling = [];
  const gaps = [];
  client.on('new_message', (data) => received.push(data.id));
  client.on('new_notification', (data) => received.push(data.id));
  client.on('polled', (summary) => polled.push(summary));
  client.on('polling', (active) => polling.push(active));
  client.on('gap', (data) => gaps.push(data));

  sockets[0].serverClose(1006); // was open: not a failed attempt
  await timers.advance(500);
  sockets[1].serverClose(1006); // 1
  await timers.advance(1000);
  sockets[2].serverClose(1006); // 2
  await drain();
  assert.equal(calls.length, 0, 'two failures: still only the socket');
  await timers.advance(2000);
  sockets[3].serverClose(1006); // 3
  await drain();
  assert.equal(calls.length, 1, 'the third failure starts polling');
  assert.deepEqual(polling, [true]);
  assert.equal(calls[0].url.origin + calls[0].url.pathname, 'https://api.ripple.test/events');
  assert.equal(calls[0].url.searchParams.get('since'), CURSOR_1);
  assert.match(calls[0].init.headers.authorization, /^Bearer token-\d+$/);
  assert.deepEqual(received, ['n2'], 'the same dedupe as the socket');
  assert.equal(client.cursor, CURSOR_2);
  assert.deepEqual(polled, [{ gap: false, replayed: 2, feed_new_posts: 1, cursor: CURSOR_2 }]);

  await timers.advance(15_000);
  await drain();
  assert.equal(calls.length, 2, 'polls again after the interval');
  assert.equal(calls[1].url.searchParams.get('since'), CURSOR_2, 'from the new cursor');
  await timers.advance(15_000);
  await drain();
  assert.equal(calls.length, 3, 'a failed poll does not stop polling');
  assert.equal(gaps.length, 1, 'a gap answer emits gap, as a gap resumed does');
  assert.equal(client.cursor, CURSOR_4);

  // The socket keeps being tried meanwhile; once one opens, polling stops.
  const last = sockets.at(-1);
  assert.ok(sockets.length > 4, 'reconnection attempts continue while polling');
  last.serverOpen();
  assert.deepEqual(polling, [true, false]);
  assert.equal(last.frames('resume')[0].since, CURSOR_4);
  await timers.advance(60_000);
  await drain();
  assert.equal(calls.length, 3, 'no poll once the socket is open');
  client.close();
});

test('without eventsUrl nothing is polled, and a poll without a cursor starts at connect time', async () => {
  const { fetch, calls } = fakeFetch([]);
  const quiet = setup({ fetch });
  quiet.client.connect();
  for (let i = 0; i < 5; i += 1) {
    await flush();
    quiet.sockets.at(-1).serverClose(1006);
    await quiet.timers.advance(30_000);
  }
  await drain();
  assert.equal(calls.length, 0);
  quiet.client.close();

  const { client, timers, sockets } = setup({ eventsUrl: 'https://api.ripple.test/events', fetch, pollAfterFailures: 1 });
  await timers.advance(42_000);
  client.connect();
  await flush();
  sockets[0].serverClose(1006);
  await drain();
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url.searchParams.get('since'), timeCursor(42_000));
  client.close();
  await timers.advance(60_000);
  await drain();
  assert.equal(calls.length, 1, 'close() stops polling');
});
