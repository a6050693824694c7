// Ripple realtime client — an ES module with no dependencies and no build step.
//
// Works in browsers and in Node >= 20: it uses `globalThis.WebSocket` (browsers, Node 22+)
// or the constructor passed as `options.WebSocket` (e.g. the `ws` package on Node 20).
//
//   import { RippleClient } from './ripple-client.js';
//   const client = new RippleClient({
//     url: 'wss://abc123.execute-api.eu-west-1.amazonaws.com/prod',
//     token: () => session.accessToken(),     // called before every (re)connection
//     eventsUrl: 'https://def456.execute-api.eu-west-1.amazonaws.com/events', // optional
//   });
//   client.on('new_message', (data, event) => render(data));
//   client.on('gap', () => refetchEverythingOverRest());
//   client.connect();
//   await client.subscribe(`post:${postId}`);
//
// Options (all optional besides `url` and `token`):
//   url                 WebSocket URL with its stage, e.g. wss://…/prod
//   token               access token, or a function returning one (called before every
//                       connection and every catch-up poll)
//   cursor              resume position to start from (persisted from an earlier session)
//   eventsUrl           the REST catch-up route, e.g. https://…/events; without it there is no
//                       polling (see "catch-up without a socket" below)
//   pollAfterFailures   failed connection attempts in a row before polling starts (3)
//   pollIntervalMs      wait between two polls (15 000)
//   latestState         the LatestState that orders state events (default: a new one;
//                       null turns ordering off and emits every event as it comes)
//   pingIntervalMs, maxConnectionAgeMs, initialBackoffMs, maxBackoffMs, backoffFactor,
//   dedupeCapacity, requestTimeoutMs, typingIntervalMs: see DEFAULTS
//   WebSocket, fetch    constructors / functions to use instead of the globals
//
// What it does for you (protocol: docs/realtime.md):
// - authenticates with the subprotocol list ['ripple.v1', <access token>] (browsers cannot
//   set an Authorization header on a WebSocket);
// - reconnects with exponential backoff and jitter, fetching a fresh token each time;
// - pings every 5 minutes (API Gateway closes connections idle for 10);
// - replaces its connection before API Gateway's 2-hour cap (make before break: the new
//   socket is open before the old one is closed);
// - resumes after every reconnection from the last cursor it saw, so notifications and
//   messages missed while offline are replayed; a `gap` event means "refetch over REST";
// - drops events whose `event_id` it has already delivered (bounded LRU set), which covers
//   replays, retried stream batches and the overlap of a connection swap;
// - unpacks `replay` frames (a resume's missed events, batched) and handles each event in
//   them exactly like a live one; the `replay` frame itself is never emitted;
// - reconnects when the server answers `unauthorized` (it no longer knows the connection);
// - orders state events (LatestState): an older version of a post, a like count with a lower
//   version, anything about a deleted post, a deleted comment coming back — all arrive out of
//   order after failures and retries, and are dropped (emitted as `stale` only);
// - catch-up without a socket: after `pollAfterFailures` failed connection attempts in a row
//   it polls `GET {eventsUrl}?since=<cursor>` every `pollIntervalMs` (the same replay as a
//   resume, through the same dedupe, cursor and events), keeps trying the socket with
//   backoff, and stops polling once a socket is open;
// - re-subscribes its channels after a reconnection;
// - throttles `typing` to the server's limit of one per second, keeping the latest state.

export const SUBPROTOCOL = 'ripple.v1';

const DEFAULTS = Object.freeze({
  pingIntervalMs: 5 * 60 * 1000,
  // API Gateway closes every connection after 2 hours; rotate well before.
  maxConnectionAgeMs: 110 * 60 * 1000,
  initialBackoffMs: 500,
  maxBackoffMs: 30 * 1000,
  backoffFactor: 2,
  dedupeCapacity: 2048,
  requestTimeoutMs: 10 * 1000,
  typingIntervalMs: 1000,
  pollAfterFailures: 3,
  pollIntervalMs: 15 * 1000,
});

/** The server's answer to a frame on a connection it no longer has: reconnect. */
const UNAUTHORIZED = 'unauthorized';
/** Close code (application range) used when the client drops a socket the server disowned. */
const CLOSE_UNAUTHORIZED = 4001;

/**
 * The smallest UUIDv7 of a millisecond: a cursor meaning "from this moment on".
 * @param {number} ms epoch milliseconds
 */
export function timeCursor(ms) {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0').slice(-12);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

/** Cursors are UUIDv7 strings: lower-case hex in a fixed layout compares like their bytes. */
function laterCursor(a, b) {
  if (!a) return b ?? null;
  if (!b) return a;
  return b.toLowerCase() > a.toLowerCase() ? b : a;
}

/** A set of the most recently seen keys, bounded: the oldest falls out first. */
export class LruSet {
  constructor(capacity) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive');
    this.capacity = capacity;
    this.entries = new Map();
  }

  /** Adds `key`; returns false if it was already there (and marks it recently seen). */
  add(key) {
    const known = this.entries.has(key);
    if (known) this.entries.delete(key);
    this.entries.set(key, true);
    if (this.entries.size > this.capacity) {
      this.entries.delete(this.entries.keys().next().value);
    }
    return !known;
  }

  has(key) {
    return this.entries.has(key);
  }

  get size() {
    return this.entries.size;
  }
}

/** A map of the most recently written keys, bounded like LruSet. */
class LruMap {
  constructor(capacity) {
    if (!(capacity > 0)) throw new RangeError('capacity must be positive');
    this.capacity = capacity;
    this.entries = new Map();
  }

  get(key) {
    return this.entries.get(key);
  }

  set(key, value) {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      this.entries.delete(this.entries.keys().next().value);
    }
  }

  delete(key) {
    this.entries.delete(key);
  }
}

/** Fields of a post that an edit changes (counts have their own events). */
const POST_CONTENT = ['text', 'media_url', 'edited_at'];

/** A post's content version: `edited_at ?? created_at` as epoch ms (NaN when unreadable). */
export function postVersion(post) {
  return Date.parse(post?.edited_at ?? post?.created_at);
}

/**
 * "The latest state wins": events about posts, likes and comments can arrive out of order
 * after failures and retries (a stream batch retried behind a newer one, a queue redelivery, a
 * writer push racing the stream). This remembers, per id, the newest state seen and tells
 * whether an event is still news:
 * - a post's content version is `edited_at ?? created_at`; an older version is stale (an equal
 *   one is not: the same content again is harmless, and an app's own REST answer followed by
 *   the event must still show);
 * - `like_updated.version` grows with every like and unlike: a lower or equal version is
 *   stale (an event without one, from an older server, always applies);
 * - after `post_deleted`, anything about that post is stale; after `comment_deleted`, that
 *   comment's `new_comment` is.
 * Memory is bounded (`capacity` ids of each kind): an id forgotten long ago is news again.
 */
export class LatestState {
  constructor({ capacity = 4096 } = {}) {
    this.posts = new LruMap(capacity); // post id → { version, content }
    this.likes = new LruMap(capacity); // post id → greatest like version
    this.deletedPosts = new LruSet(capacity);
    this.deletedComments = new LruSet(capacity);
  }

  /**
   * Records `event` (an envelope: `{type, data}`) and returns whether it changes something,
   * i.e. whether an app should apply it. Types without an order rule always return true.
   */
  apply(event) {
    const data = event?.data ?? {};
    switch (event?.type) {
      case 'post_created':
      case 'post_updated':
        if (this.deletedPosts.has(data.id) || this.isOlderPost(data)) return false;
        this.observePost(data);
        return true;
      case 'post_deleted':
        return this.deletePost(data.post_id);
      case 'like_updated':
        return this.observeLikes(data);
      case 'new_comment':
        return !this.deletedPosts.has(data.post_id) && !this.deletedComments.has(data.id);
      case 'comment_deleted': {
        if (data.comment_id === undefined) return true;
        const fresh = !this.deletedComments.has(data.comment_id);
        this.deletedComments.add(data.comment_id);
        return fresh;
      }
      default:
        return true;
    }
  }

  /**
   * Takes a post from anywhere (an event, a REST answer) and returns what to show: null if the
   * post was deleted, else the post with the newest content seen so far (its own if it is at
   * least as new). Counts (`like_count`, `comment_count`) pass through untouched.
   */
  observePost(post) {
    if (!post?.id) return post ?? null;
    if (this.deletedPosts.has(post.id)) return null;
    const version = postVersion(post);
    if (Number.isNaN(version)) return post;
    const known = this.posts.get(post.id);
    if (known && known.version > version) return { ...post, ...known.content };
    this.posts.set(post.id, { version, content: pick(post, POST_CONTENT) });
    return post;
  }

  /** Whether a newer version of this post than `post` has been seen. */
  isOlderPost(post) {
    const known = this.posts.get(post?.id);
    return Boolean(known && known.version > postVersion(post));
  }

  /** Records a deletion (e.g. the app's own REST delete); true the first time. */
  deletePost(postId) {
    if (postId === undefined) return true;
    const fresh = !this.deletedPosts.has(postId);
    this.deletedPosts.add(postId);
    this.posts.delete(postId);
    this.likes.delete(postId);
    return fresh;
  }

  isPostDeleted(postId) {
    return this.deletedPosts.has(postId);
  }

  isCommentDeleted(commentId) {
    return this.deletedComments.has(commentId);
  }

  observeLikes({ post_id: postId, version }) {
    if (this.deletedPosts.has(postId)) return false;
    if (!Number.isFinite(version)) return true;
    const known = this.likes.get(postId);
    if (known !== undefined && version <= known) return false;
    this.likes.set(postId, version);
    return true;
  }
}

/**
 * Delay before reconnection attempt `attempt` (0-based): exponential, capped, with "equal
 * jitter" — half fixed, half random — so a fleet of clients does not reconnect in lockstep
 * after an outage, yet never retries immediately.
 */
export function backoffDelay(attempt, { initialBackoffMs, maxBackoffMs, backoffFactor }, random) {
  const ceiling = Math.min(maxBackoffMs, initialBackoffMs * backoffFactor ** attempt);
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** A minimal event emitter (no Node dependency). */
class Emitter {
  constructor() {
    this.listeners = new Map();
  }

  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  once(type, listener) {
    const off = this.on(type, (...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  off(type, listener) {
    this.listeners.get(type)?.delete(listener);
  }

  emit(type, ...args) {
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        listener(...args);
      } catch (error) {
        // A broken listener must not break the connection or the other listeners.
        if (type !== 'listener_error') this.emit('listener_error', error, type);
      }
    }
  }
}

/**
 * Emits, besides every server event by its `type` (`post_created`, `new_message`,
 * `user_typing`, `error`…, with `(data, event)`):
 * - `event` (event): every server event, after dedupe;
 * - `open` / `close` ({code, reason}) / `reconnecting` ({attempt, delayMs});
 * - `cursor` (cursor): the resume position moved;
 * - `gap` (data): the server could not replay everything — refetch over REST;
 * - `stale` (event): a state event LatestState found older than what was seen (not emitted
 *   by its type);
 * - `polling` (boolean): catch-up polling over REST started / stopped;
 * - `polled` ({gap, replayed, feed_new_posts, cursor}): a poll's answer, after its events;
 * - `transport_error` (error): the socket or a poll reported an error (a close follows).
 */
export class RippleClient extends Emitter {
  /**
   * @param {object} options
   * @param {string} options.url WebSocket URL, e.g. wss://…/prod
   * @param {string | (() => string | Promise<string>)} options.token access token, or a function returning a fresh one
   * @param {Function} [options.WebSocket] WebSocket constructor (default: globalThis.WebSocket)
   * @param {string} [options.cursor] resume position to start from (e.g. persisted from a previous session)
   * @param {string} [options.eventsUrl] REST catch-up route (`GET …/events?since=`), polled while no socket connects
   * @param {LatestState | null} [options.latestState] orders state events (default: a new LatestState; null: off)
   * @param {Function} [options.fetch] fetch function for the polls (default: globalThis.fetch)
   */
  constructor(options) {
    super();
    const {
      url,
      token,
      cursor = null,
      eventsUrl = null,
      latestState = new LatestState(),
      WebSocket: socketClass = globalThis.WebSocket,
      fetch: fetchFunction = globalThis.fetch,
      ...rest
    } = options ?? {};
    if (!url) throw new TypeError('url is required');
    if (!token) throw new TypeError('token is required');
    if (typeof socketClass !== 'function') {
      throw new TypeError('no WebSocket available: pass options.WebSocket (e.g. the ws package)');
    }
    this.url = url;
    this.tokenSource = typeof token === 'function' ? token : () => token;
    this.SocketClass = socketClass;
    this.eventsUrl = eventsUrl;
    this.fetch = fetchFunction;
    if (eventsUrl && typeof fetchFunction !== 'function') {
      throw new TypeError('eventsUrl needs a fetch function: pass options.fetch');
    }
    /** The order of state events; apps feed it their REST answers too (`observePost`…). */
    this.latest = latestState;
    this.settings = { ...DEFAULTS, ...pick(rest, Object.keys(DEFAULTS)) };
    this.random = rest.random ?? Math.random;
    this.now = rest.now ?? (() => Date.now());
    this.timers = rest.timers ?? {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (id) => clearTimeout(id),
      setInterval: (fn, ms) => setInterval(fn, ms),
      clearInterval: (id) => clearInterval(id),
    };

    this.cursorValue = cursor;
    this.seen = new LruSet(this.settings.dedupeCapacity);
    this.channels = new Set();
    this.pending = new Map();
    this.requestCounter = 0;
    this.attempt = 0;
    this.socket = null;
    this.nextSocket = null;
    this.retiring = null;
    this.stopped = true;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.rotateTimer = null;
    this.typingState = { lastSentAt: -Infinity, queued: new Map(), timer: null };
    // Connection attempts in a row that never reached an open socket (polling starts at
    // `pollAfterFailures`), and the polling state.
    this.connectFailures = 0;
    this.opened = new WeakSet();
    this.poll = { active: false, timer: null, generation: 0 };
    this.startedAt = null;
  }

  /** The resume position: the latest cursor seen. Persist it to resume across page loads. */
  get cursor() {
    return this.cursorValue;
  }

  /** Whether a socket is open. */
  get connected() {
    return this.socket?.readyState === 1;
  }

  /** Starts connecting (and keeps reconnecting until `close()`). */
  connect() {
    if (!this.stopped) return;
    this.stopped = false;
    this.startedAt ??= this.now();
    this.open('connect');
  }

  /** Closes for good: no reconnection; pending requests are rejected. */
  close() {
    this.stopped = true;
    this.timers.clearTimeout(this.reconnectTimer);
    this.clearConnectionTimers();
    this.timers.clearTimeout(this.typingState.timer);
    this.stopPolling();
    for (const socket of [this.socket, this.nextSocket]) socket?.close(1000, 'client closed');
    this.socket = null;
    this.nextSocket = null;
    this.rejectPending(new Error('client closed'));
  }

  /** Subscribes to `post:{id}` or `presence:{user_id}`; kept across reconnections. */
  subscribe(channel) {
    this.channels.add(channel);
    return this.request({ action: 'subscribe', channel }).catch((error) => {
      // Refused by the server (forbidden, not_found…): forget it. A dropped or disowned
      // connection is not a refusal: the channel is subscribed again on reconnection.
      if (isRefusal(error)) this.channels.delete(channel);
      throw error;
    });
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    return this.request({ action: 'unsubscribe', channel });
  }

  /** Resolves with the `pong` event. */
  ping() {
    return this.request({ action: 'ping' });
  }

  /**
   * Tells `to` that the user started or stopped typing. At most one frame per second goes
   * out; within the second, the latest state per recipient waits and is sent next.
   * @param {string} to user id
   * @param {'start' | 'stop'} state
   */
  typing(to, state) {
    const typing = this.typingState;
    typing.queued.delete(to);
    typing.queued.set(to, state);
    this.flushTyping();
  }

  // ---- internals -----------------------------------------------------------------------------

  flushTyping() {
    const typing = this.typingState;
    if (typing.timer !== null || typing.queued.size === 0 || !this.connected) return;
    const wait = typing.lastSentAt + this.settings.typingIntervalMs - this.now();
    if (wait > 0) {
      typing.timer = this.timers.setTimeout(() => {
        typing.timer = null;
        this.flushTyping();
      }, wait);
      return;
    }
    const [to, state] = typing.queued.entries().next().value;
    typing.queued.delete(to);
    typing.lastSentAt = this.now();
    this.send({ action: 'typing', request_id: this.nextRequestId(), to, state });
    this.flushTyping();
  }

  nextRequestId() {
    this.requestCounter += 1;
    return `r${this.requestCounter}`;
  }

  /** Sends a frame whose reply (matched on `request_id`) settles the returned promise. */
  request(frame) {
    const request_id = this.nextRequestId();
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        // Subscriptions are replayed on (re)connection; other requests need a socket now.
        if (frame.action === 'subscribe') {
          this.pending.set(request_id, { resolve, reject, timer: null, frame });
          return;
        }
        reject(new Error('not connected'));
        return;
      }
      const timer = this.timers.setTimeout(() => {
        this.pending.delete(request_id);
        reject(new Error(`${frame.action} timed out`));
      }, this.settings.requestTimeoutMs);
      this.pending.set(request_id, { resolve, reject, timer, frame });
      this.send({ ...frame, request_id });
    });
  }

  send(frame) {
    if (!this.connected) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  async open(reason) {
    let token;
    try {
      token = await this.tokenSource();
    } catch (error) {
      this.emit('transport_error', error);
      this.connectFailed(reason);
      return;
    }
    if (this.stopped) return;
    let socket;
    try {
      socket = new this.SocketClass(this.url, [SUBPROTOCOL, token]);
    } catch (error) {
      this.emit('transport_error', error);
      this.connectFailed(reason);
      return;
    }
    const rotating = reason === 'rotate';
    if (rotating) this.nextSocket = socket;
    else this.socket = socket;

    socket.onopen = () => this.handleOpen(socket);
    socket.onmessage = (message) => this.handleMessage(socket, message.data);
    socket.onerror = (error) => this.emit('transport_error', error);
    socket.onclose = (event) => this.handleClose(socket, event);
  }

  handleOpen(socket) {
    if (this.stopped) {
      socket.close(1000, 'client closed');
      return;
    }
    this.opened.add(socket);
    this.connectFailures = 0;
    // The socket's resume catches up from here on.
    this.stopPolling();
    if (socket === this.nextSocket) {
      // Make before break: the replacement is open, retire the old socket.
      const old = this.socket;
      this.socket = socket;
      this.nextSocket = null;
      this.clearConnectionTimers();
      // Replies to requests still in flight on the old socket are accepted until it closes.
      this.retiring = old;
      old?.close(1000, 'rotated');
    }
    this.pingTimer = this.timers.setInterval(() => {
      this.ping().catch(() => {});
    }, this.settings.pingIntervalMs);
    this.rotateTimer = this.timers.setTimeout(() => this.open('rotate'), this.settings.maxConnectionAgeMs);
    this.emit('open');
    // Catch up first, then restore subscriptions.
    if (this.cursorValue) {
      this.send({ action: 'resume', request_id: this.nextRequestId(), since: this.cursorValue });
    } else {
      // No position yet: the server's clock (pong) gives one, so a later resume misses nothing.
      this.send({ action: 'ping', request_id: this.nextRequestId() });
    }
    for (const [request_id, entry] of this.pending) {
      if (entry.frame.action === 'subscribe' && entry.timer === null) {
        this.pending.delete(request_id);
        this.request(entry.frame).then(entry.resolve, entry.reject);
      }
    }
    const waiting = new Set([...this.pending.values()].map((entry) => entry.frame.channel));
    for (const channel of this.channels) {
      if (!waiting.has(channel)) {
        // A refusal is also delivered as an `error` event; nothing else to do here.
        this.subscribe(channel).catch(() => {});
      }
    }
    this.flushTyping();
  }

  handleMessage(socket, raw) {
    if (socket !== this.socket && socket !== this.nextSocket && socket !== this.retiring) return;
    let event;
    try {
      event = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch {
      return;
    }
    if (!event || typeof event.type !== 'string') return;
    const disowned = event.type === 'error' && event.data?.code === UNAUTHORIZED;
    // The connection demonstrably works: the next failure starts backing off from scratch.
    // Not so when the server says it does not know the connection: a server that disowns
    // every new connection must not get a reconnection loop without backoff.
    if (!disowned) this.attempt = 0;
    if (event.type === 'replay') {
      this.unpackReplay(event);
      return;
    }
    this.deliver(event);
    if (disowned && socket === this.socket) this.drop(socket, CLOSE_UNAUTHORIZED, UNAUTHORIZED);
  }

  /** A batch of a resume's missed events, oldest first: each one as if it came alone. */
  unpackReplay(frame) {
    const events = frame.data?.events;
    if (!Array.isArray(events)) return;
    for (const event of events) {
      // A replay holds event envelopes only; never a nested batch.
      if (event && typeof event.type === 'string' && event.type !== 'replay') this.deliver(event);
    }
  }

  /** One event, from a socket, a replay or a poll: dedupe, cursor, order, emit. */
  deliver(event) {
    if (event.event_id && !this.seen.add(event.event_id)) return;

    const data = event.data ?? {};
    if (event.cursor) this.advanceCursor(event.cursor);
    if (event.type === 'pong' && !this.cursorValue && data.server_time) {
      this.advanceCursor(timeCursor(Date.parse(data.server_time)));
    }
    if (event.type === 'resumed' && data.gap) this.emit('gap', data);
    this.settle(event, data);
    if (this.latest && !this.latest.apply(event)) {
      this.emit('stale', event);
      return;
    }
    this.emit('event', event);
    this.emit(event.type, data, event);
  }

  /**
   * Gives up on a socket now (the server disowned it): the client acts as if it had closed —
   * pending requests fail, a reconnection is scheduled with the usual backoff — and whatever
   * the socket still delivers is ignored.
   */
  drop(socket, code, reason) {
    this.handleClose(socket, { code, reason });
    socket.close(code, reason);
  }

  advanceCursor(cursor) {
    const next = laterCursor(this.cursorValue, cursor);
    if (next !== this.cursorValue) {
      this.cursorValue = next;
      this.emit('cursor', next);
    }
  }

  settle(event, data) {
    const entry = data.request_id ? this.pending.get(data.request_id) : undefined;
    if (!entry) return;
    this.pending.delete(data.request_id);
    this.timers.clearTimeout(entry.timer);
    if (event.type === 'error') {
      const error = new Error(data.message ?? data.code);
      error.code = data.code;
      error.requestId = data.request_id;
      entry.reject(error);
    } else {
      entry.resolve(event);
    }
  }

  handleClose(socket, event) {
    const neverOpened = !this.opened.has(socket);
    if (socket === this.retiring) {
      this.retiring = null;
      return;
    }
    if (socket === this.nextSocket) {
      // The replacement failed to open: keep the current socket, try again later.
      this.nextSocket = null;
      this.rotateTimer = this.timers.setTimeout(
        () => this.open('rotate'),
        backoffDelay(0, this.settings, this.random),
      );
      return;
    }
    if (socket !== this.socket) return;
    this.socket = null;
    this.clearConnectionTimers();
    // A typing state queued now would be stale by the time the socket is back.
    this.typingState.queued.clear();
    for (const [request_id, entry] of this.pending) {
      if (entry.timer !== null) {
        this.timers.clearTimeout(entry.timer);
        this.pending.delete(request_id);
        entry.reject(new Error('connection closed'));
      }
    }
    this.emit('close', { code: event?.code, reason: event?.reason });
    if (neverOpened) this.connectFailed('reconnect');
    else if (!this.stopped) this.scheduleReconnect();
  }

  /** A connection attempt that never reached an open socket. */
  connectFailed(reason) {
    if (reason === 'rotate') {
      // The current socket still works; try the replacement again later.
      this.nextSocket = null;
      this.rotateTimer = this.timers.setTimeout(() => this.open('rotate'), backoffDelay(0, this.settings, this.random));
      return;
    }
    this.connectFailures += 1;
    if (this.connectFailures >= this.settings.pollAfterFailures) this.startPolling();
    this.scheduleReconnect();
  }

  // ---- catch-up without a socket ---------------------------------------------------------------

  startPolling() {
    if (this.poll.active || !this.eventsUrl || this.stopped) return;
    this.poll.active = true;
    this.poll.generation += 1;
    this.emit('polling', true);
    this.pollOnce(this.poll.generation);
  }

  stopPolling() {
    if (!this.poll.active) return;
    this.poll.active = false;
    this.poll.generation += 1;
    this.timers.clearTimeout(this.poll.timer);
    this.poll.timer = null;
    this.emit('polling', false);
  }

  /** One `GET {eventsUrl}?since=<cursor>`; the next is scheduled once this one is done. */
  async pollOnce(generation) {
    try {
      const body = await this.fetchEvents();
      // Events are news even if the socket opened meanwhile (dedupe drops repeats); a
      // client closed meanwhile wants nothing.
      if (!this.stopped) this.applyPoll(body);
    } catch (error) {
      if (!this.stopped) this.emit('transport_error', error);
    }
    if (generation !== this.poll.generation || !this.poll.active) return;
    this.poll.timer = this.timers.setTimeout(() => this.pollOnce(generation), this.settings.pollIntervalMs);
  }

  async fetchEvents() {
    // Without a cursor (no socket ever opened): from when this client started.
    const since = this.cursorValue ?? timeCursor(this.startedAt ?? this.now());
    const url = new URL(this.eventsUrl, globalThis.location?.href);
    url.searchParams.set('since', since);
    const token = await this.tokenSource();
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    const timer = this.timers.setTimeout(() => controller?.abort(), this.settings.requestTimeoutMs);
    try {
      const response = await this.fetch(url.toString(), {
        method: 'GET',
        headers: { accept: 'application/json', authorization: `Bearer ${token}` },
        signal: controller?.signal,
      });
      if (!response.ok) {
        const error = new Error(`GET /events answered ${response.status}`);
        error.status = response.status;
        throw error;
      }
      return await response.json();
    } finally {
      this.timers.clearTimeout(timer);
    }
  }

  applyPoll(body) {
    if (!body || typeof body !== 'object') throw new Error('GET /events: not a JSON object');
    for (const event of Array.isArray(body.events) ? body.events : []) {
      if (event && typeof event.type === 'string' && event.type !== 'replay') this.deliver(event);
    }
    if (typeof body.cursor === 'string') this.advanceCursor(body.cursor);
    const summary = {
      gap: Boolean(body.gap),
      replayed: body.replayed ?? 0,
      feed_new_posts: body.feed_new_posts ?? 0,
      cursor: body.cursor ?? null,
    };
    if (summary.gap) this.emit('gap', summary);
    this.emit('polled', summary);
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const delayMs = backoffDelay(this.attempt, this.settings, this.random);
    this.attempt += 1;
    this.emit('reconnecting', { attempt: this.attempt, delayMs });
    this.timers.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = this.timers.setTimeout(() => this.open('reconnect'), delayMs);
  }

  clearConnectionTimers() {
    this.timers.clearInterval(this.pingTimer);
    this.timers.clearTimeout(this.rotateTimer);
    this.pingTimer = null;
    this.rotateTimer = null;
  }

  rejectPending(error) {
    for (const entry of this.pending.values()) {
      this.timers.clearTimeout(entry.timer);
      entry.reject(error);
    }
    this.pending.clear();
  }
}

/** Whether a request's failure is the server refusing it (not the connection failing). */
function isRefusal(error) {
  return Boolean(error?.code) && error.code !== UNAUTHORIZED;
}

function pick(object, keys) {
  return Object.fromEntries(keys.filter((key) => object[key] !== undefined).map((key) => [key, object[key]]));
}
