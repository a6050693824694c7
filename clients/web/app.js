// Ripple web app: boot, sign-in, the shell (navigation, bell, connection status,
// diagnostics), the realtime connection and the hash router. Screens live in their own
// modules and receive a `ctx` (shared services) and a `scope` (listeners and timers that end
// when the screen is left).

import { RippleClient } from './lib/ripple-client.js';
import config from './config.js';
import { Api } from './api.js';
import { h, replace, toast } from './dom.js';
import { Users } from './users.js';
import { renderHome, renderPost } from './feed.js';
import { mountBell, renderNotifications } from './notifications.js';
import { mountInbox, renderInbox, renderThread } from './messages.js';
import { renderPeople, renderProfile, trackPresence } from './people.js';

const $ = (id) => document.getElementById(id);

/** API endpoints: query parameters, then config.js, then this page's origin. */
function endpoints() {
  const query = new URLSearchParams(location.search);
  const apiUrl = query.get('api') || config.apiUrl || location.origin;
  const wsUrl = query.get('ws') || config.wsUrl || '';
  const valid = (url, protocols) => {
    try {
      return protocols.includes(new URL(url).protocol);
    } catch {
      return false;
    }
  };
  const problems = [];
  if (!valid(apiUrl, ['http:', 'https:'])) problems.push(`API URL "${apiUrl}" is not an http(s) URL`);
  if (!valid(wsUrl, ['ws:', 'wss:'])) problems.push('no WebSocket URL: set wsUrl in config.js or add ?ws=wss://…/stage');
  return { apiUrl, wsUrl, problems };
}

/** Listeners, timers and room holds of one screen, released together. */
class Scope {
  constructor(ctx) {
    this.ctx = ctx;
    this.disposers = [];
  }
  /** A server event (`post_created`…) or a client event (`open`, `resumed`…). */
  on(type, listener) {
    this.disposers.push(this.ctx.client.on(type, listener));
  }
  /** A page-local event (`resync`, `presence`, `inbox`…). */
  bus(type, listener) {
    this.disposers.push(this.ctx.bus.on(type, listener));
  }
  /** Keeps `channel` subscribed while the screen is shown. */
  hold(channel) {
    const release = this.ctx.rooms.hold(channel);
    this.disposers.push(release);
    return release;
  }
  timeout(fn, ms) {
    const id = setTimeout(fn, ms);
    this.disposers.push(() => clearTimeout(id));
    return id;
  }
  interval(fn, ms) {
    const id = setInterval(fn, ms);
    this.disposers.push(() => clearInterval(id));
  }
  listen(target, type, listener, options) {
    target.addEventListener(type, listener, options);
    this.disposers.push(() => target.removeEventListener(type, listener, options));
  }
  dispose() {
    for (const dispose of this.disposers.splice(0)) {
      try {
        dispose();
      } catch (error) {
        console.warn('cleanup failed', error);
      }
    }
  }
}

/**
 * The latest `post_created` events, whichever page was showing when they arrived. A
 * follower's feed is written a moment after the post (stream, queue, worker), so the home
 * page merges these into the page it fetches: a post whose event came just before the page
 * opened would otherwise show nowhere until the next refetch.
 */
class RecentPosts {
  constructor(limit = 20, maxAgeMs = 60_000) {
    this.limit = limit;
    this.maxAgeMs = maxAgeMs;
    this.posts = new Map();
  }
  add(post) {
    this.posts.set(post.id, { post, at: Date.now() });
    while (this.posts.size > this.limit) this.posts.delete(this.posts.keys().next().value);
  }
  remove(id) {
    this.posts.delete(id);
  }
  /** Oldest first, only those younger than `maxAgeMs`. */
  list() {
    const now = Date.now();
    return [...this.posts.values()].filter(({ at }) => now - at < this.maxAgeMs).map(({ post }) => post);
  }
}

/** A tiny emitter for page-local events. */
class Bus {
  constructor() {
    this.listeners = new Map();
  }
  on(type, listener) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(listener);
    return () => this.listeners.get(type)?.delete(listener);
  }
  emit(type, value) {
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        console.error(`${type} listener failed`, error);
      }
    }
  }
}

/** Subscriptions shared by screens: subscribed on first hold, unsubscribed on last release. */
class Rooms {
  constructor(client) {
    this.client = client;
    this.counts = new Map();
  }
  hold(channel) {
    const count = this.counts.get(channel) ?? 0;
    this.counts.set(channel, count + 1);
    if (count === 0) {
      this.client.subscribe(channel).catch((error) => {
        // A refusal ends the hold; `unauthorized` only means "reconnecting" (the client
        // subscribes again on the next socket).
        if (error.code && error.code !== 'unauthorized') this.counts.delete(channel);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(channel) ?? 1) - 1;
      if (left > 0) {
        this.counts.set(channel, left);
        return;
      }
      this.counts.delete(channel);
      this.client.unsubscribe(channel).catch(() => {});
    };
  }
}

/** Counters shown in the diagnostics panel. */
class Diagnostics {
  constructor() {
    this.values = {
      connection: 'connecting',
      reconnects: 0,
      resumes: 0,
      replayed: 0,
      polls: 0,
      gaps: 0,
      stale: 0,
      lateRefetches: 0,
      events: 0,
      cursor: '—',
    };
    this.labels = {
      connection: 'Connection',
      reconnects: 'Reconnections',
      resumes: 'Resumes',
      replayed: 'Events replayed on resume',
      polls: 'Catch-up polls (GET /events, no socket)',
      gaps: 'Gaps (REST refetch)',
      stale: 'Stale events dropped (older than shown)',
      lateRefetches: 'Feed refetches (own post_created late > 3 s)',
      events: 'Events received',
      cursor: 'Resume cursor',
    };
    this.pending = false;
  }
  set(key, value) {
    this.values[key] = value;
    this.render();
  }
  add(key, amount = 1) {
    this.values[key] += amount;
    this.render();
  }
  render() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      const list = $('diagnostics-list');
      replace(
        list,
        Object.entries(this.labels).map(([key, label]) => [
          h('dt', {}, label),
          h('dd', { 'data-testid': `diag-${key}` }, String(this.values[key])),
        ]),
      );
    });
  }
}

// ---- connection status -----------------------------------------------------------------------

const STATUS_TEXT = {
  connecting: 'Connecting…',
  connected: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

function setStatus(ctx, state, detail) {
  const element = $('connection-status');
  element.dataset.state = state;
  element.querySelector('.status-label').textContent = STATUS_TEXT[state];
  element.title = detail ?? STATUS_TEXT[state];
  ctx.diag.set('connection', detail ? `${state} (${detail})` : state);
}

function wireConnection(ctx) {
  const { client, diag } = ctx;
  let everOpened = false;
  client.on('open', () => {
    if (everOpened) diag.add('reconnects');
    everOpened = true;
    setStatus(ctx, 'connected');
  });
  client.on('close', () => setStatus(ctx, navigator.onLine ? 'reconnecting' : 'offline'));
  client.on('reconnecting', ({ attempt, delayMs }) => {
    if (!navigator.onLine) return setStatus(ctx, 'offline');
    setStatus(ctx, 'reconnecting', `attempt ${attempt}, next in ${(delayMs / 1000).toFixed(1)} s`);
  });
  client.on('event', () => diag.add('events'));
  client.on('stale', () => diag.add('stale'));
  client.on('post_created', (post) => ctx.recentPosts.add(post));
  client.on('post_deleted', ({ post_id: id }) => ctx.recentPosts.remove(id));
  client.on('cursor', (cursor) => diag.set('cursor', cursor));
  // No socket for a while: the client catches up over GET /events meanwhile.
  let polledFeedPosts = 0;
  client.on('polling', (active) => {
    polledFeedPosts = 0;
    if (active) setStatus(ctx, navigator.onLine ? 'reconnecting' : 'offline', 'catching up over HTTP meanwhile');
  });
  client.on('polled', (data) => {
    diag.add('polls');
    diag.add('replayed', data.replayed);
    // Posts are not replayed: refetch the feed when the count of new ones grew (the count is
    // "since the cursor", so it repeats from poll to poll until the socket is back).
    if (!data.gap && data.feed_new_posts > polledFeedPosts) ctx.bus.emit('resync', { feedNewPosts: data.feed_new_posts });
    polledFeedPosts = data.feed_new_posts;
  });
  client.on('resumed', (data) => {
    diag.add('resumes');
    diag.add('replayed', data.replayed ?? 0);
    // Posts, comments and like counts are not replayed: refetch what is on screen.
    if (!data.gap) ctx.bus.emit('resync', { feedNewPosts: data.feed_new_posts ?? 0 });
  });
  client.on('gap', () => {
    diag.add('gaps');
    toast('You were away for a while: refreshing.');
    ctx.bus.emit('resync', { gap: true });
  });
  client.on('error', (data) => {
    // `unauthorized`: the server no longer knows this socket; the client reconnects by itself.
    if (data.code && data.code !== 'rate_limited' && data.code !== 'unauthorized') console.warn('server refused', data);
  });
  window.addEventListener('offline', () => setStatus(ctx, 'offline'));
  window.addEventListener('online', () => {
    setStatus(ctx, 'reconnecting', 'network is back');
    if (!client.connected) {
      // Reconnect now instead of waiting out the backoff.
      client.close();
      client.connect();
      return;
    }
    // The socket may have survived the outage, or be dead without knowing it yet: ask.
    client.ping().then(
      () => setStatus(ctx, 'connected'),
      () => client.socket?.close(4000, 'no pong after the network came back'),
    );
  });
  $('drop-connection').addEventListener('click', () => {
    client.socket?.close(4000, 'dropped from the diagnostics panel');
  });
}

// ---- sign-in -----------------------------------------------------------------------------------

function showAuth(api, problems, message) {
  $('topbar').hidden = true;
  $('footer').hidden = true;
  let mode = 'login';
  const error = h('p', { class: 'form-error', role: 'alert', id: 'auth-error' });
  if (message) error.textContent = message;
  const username = h('input', {
    id: 'auth-username', name: 'username', autocomplete: 'username', required: true,
    minlength: 3, maxlength: 30, pattern: '[A-Za-z0-9_]+', 'aria-describedby': 'auth-username-hint',
  });
  const password = h('input', {
    id: 'auth-password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true, minlength: 8, maxlength: 128,
  });
  const displayName = h('input', { id: 'auth-display-name', name: 'display_name', maxlength: 50, autocomplete: 'name' });
  const nameField = h('div', { class: 'field', hidden: true },
    h('label', { for: 'auth-display-name' }, 'Display name ', h('span', { class: 'muted' }, '(optional)')), displayName);
  const submit = h('button', { type: 'submit', class: 'primary wide', id: 'auth-submit' }, 'Sign in');
  const switchButton = h('button', { type: 'button', class: 'link-button', id: 'auth-switch' }, 'Create an account');
  const switchText = h('span', {}, 'New here? ');
  const title = h('h1', { id: 'auth-title' }, 'Sign in to Ripple');

  switchButton.addEventListener('click', () => {
    mode = mode === 'login' ? 'register' : 'login';
    const registering = mode === 'register';
    title.textContent = registering ? 'Create your account' : 'Sign in to Ripple';
    submit.textContent = registering ? 'Create account' : 'Sign in';
    switchText.textContent = registering ? 'Have an account? ' : 'New here? ';
    switchButton.textContent = registering ? 'Sign in' : 'Create an account';
    nameField.hidden = !registering;
    password.autocomplete = registering ? 'new-password' : 'current-password';
    error.textContent = '';
  });

  const form = h('form', { class: 'auth-form', novalidate: false },
    title,
    h('p', { class: 'muted' }, 'Posts, likes and messages, live.'),
    h('div', { class: 'field' },
      h('label', { for: 'auth-username' }, 'Username'), username,
      h('small', { id: 'auth-username-hint', class: 'muted' }, '3–30 letters, digits or _')),
    nameField,
    h('div', { class: 'field' }, h('label', { for: 'auth-password' }, 'Password'), password),
    error,
    submit,
    h('p', { class: 'switch' }, switchText, switchButton),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    try {
      if (mode === 'register') await api.register(username.value.trim(), password.value, displayName.value.trim());
      else await api.login(username.value.trim(), password.value);
      location.hash = '#/';
      // A second sign-in in this page (after a session ended) starts from a clean page.
      if (everStarted) location.reload();
      else startApp(api);
    } catch (failure) {
      error.textContent = failure.message;
      submit.disabled = false;
    }
  });

  const main = $('main');
  replace(main, h('section', { class: 'auth' },
    h('div', { class: 'auth-hero', 'aria-hidden': 'true' }, h('img', { src: 'favicon.svg', alt: '', width: 56, height: 56 })),
    problems.length
      ? h('div', { class: 'card', role: 'alert' }, h('h1', {}, 'Configuration needed'),
        h('ul', {}, problems.map((p) => h('li', {}, p))))
      : form));
  if (!problems.length) username.focus();
}

// ---- the signed-in app -------------------------------------------------------------------------

const ROUTES = [
  [/^\/?$/, 'home', (ctx, scope, main) => renderHome(ctx, scope, main)],
  [/^\/post\/([\w-]+)$/, 'home', (ctx, scope, main, [id]) => renderPost(ctx, scope, main, id)],
  [/^\/notifications$/, 'notifications', (ctx, scope, main) => renderNotifications(ctx, scope, main)],
  [/^\/messages$/, 'messages', (ctx, scope, main) => renderInbox(ctx, scope, main)],
  [/^\/messages\/([\w-]+)$/, 'messages', (ctx, scope, main, [id]) => renderThread(ctx, scope, main, id)],
  [/^\/people$/, 'people', (ctx, scope, main) => renderPeople(ctx, scope, main)],
  [/^\/u\/([\w-]+)$/, 'people', (ctx, scope, main, [id]) => renderProfile(ctx, scope, main, id)],
];

function route(ctx) {
  let path;
  try {
    path = decodeURIComponent(location.hash.replace(/^#/, '')) || '/';
  } catch {
    path = '/not-found'; // a malformed %-escape in a hand-typed address
  }
  ctx.scope?.dispose();
  const scope = new Scope(ctx);
  ctx.scope = scope;
  const main = $('main');
  main.replaceChildren();
  const match = ROUTES.map(([pattern, nav, render]) => [path.match(pattern), nav, render]).find(([m]) => m);
  if (!match) {
    replace(main, h('section', { class: 'card' }, h('h1', {}, 'Not found'), h('a', { href: '#/' }, 'Back home')));
    return;
  }
  const [found, nav, render] = match;
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  Promise.resolve(render(ctx, scope, main, found.slice(1))).then(() => {
    // Keyboard and screen-reader users start at the new content (unless the screen focused
    // a field of its own, like the composer or the message box).
    if (ctx.scope === scope && (document.activeElement === document.body || !main.contains(document.activeElement))) {
      main.focus({ preventScroll: true });
    }
  }).catch((error) => {
    if (ctx.scope !== scope) return;
    replace(main, h('section', { class: 'card', role: 'alert' }, h('h1', {}, 'Something went wrong'), h('p', {}, error.message)));
  });
}

let running = null;
let everStarted = false;

async function startApp(api) {
  const { apiUrl, wsUrl } = endpoints();
  const client = new RippleClient({
    url: wsUrl,
    token: () => api.freshAccessToken(),
    // Catch-up over REST while the socket cannot connect (a proxy that blocks WebSockets…).
    eventsUrl: `${apiUrl.replace(/\/+$/, '')}/events`,
  });
  const ctx = {
    api,
    client,
    bus: new Bus(),
    recentPosts: new RecentPosts(),
    rooms: new Rooms(client),
    diag: new Diagnostics(),
    users: new Users(api),
    presence: new Map(),
    me: api.user,
    scope: null,
    navigate: (hash) => {
      location.hash = hash;
    },
  };
  running = ctx;
  everStarted = true;
  ctx.users.remember(ctx.me);
  $('topbar').hidden = false;
  $('footer').hidden = false;
  ctx.diag.render();
  wireConnection(ctx);
  trackPresence(ctx);
  mountBell(ctx);
  mountInbox(ctx);
  client.connect();
  window.addEventListener('hashchange', () => running === ctx && route(ctx));
  route(ctx);
  // The stored profile may be stale (edited in another tab or device).
  api.get('/users/me').then((me) => {
    ctx.me = me;
    api.user = me;
    ctx.users.remember(me);
  }).catch(() => {});
}

function boot() {
  const { apiUrl, problems } = endpoints();
  const api = new Api(apiUrl, {
    onSessionEnded: (reason) => {
      running?.client.close();
      running?.scope?.dispose();
      running = null;
      showAuth(api, [], `Signed out: ${reason}.`);
    },
  });
  $('sign-out').addEventListener('click', async () => {
    running?.client.close();
    running?.scope?.dispose();
    running = null;
    await api.logout();
    location.reload();
  });
  if (api.user && !problems.length) startApp(api);
  else showAuth(api, problems);
}

boot();
