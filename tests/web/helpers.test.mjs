// Pure helpers of the web app, without a browser (`make test-web` runs these first).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { refreshMargin } from '../../clients/web/api.js';
import { ago } from '../../clients/web/dom.js';
import { postContent } from '../../clients/web/feed.js';
import { UnreadCounter } from '../../clients/web/notifications.js';
import { LatestState } from '../../clients/js/ripple-client.js';

test('the usual 15-minute token is refreshed a minute before expiry', () => {
  assert.equal(refreshMargin(15 * 60 * 1000), 60 * 1000);
});

test('short tokens are refreshed early, but never sooner than a fifth of their lifetime', () => {
  assert.equal(refreshMargin(75 * 1000), 60 * 1000); // refreshed after 15 s
  assert.equal(refreshMargin(30 * 1000), 24 * 1000); // after 6 s
  assert.equal(refreshMargin(10 * 1000), 8 * 1000); // after 2 s, not in a loop
  for (const lifetime of [1000, 5000, 61_000, 900_000, 3_600_000]) {
    const wait = lifetime - refreshMargin(lifetime);
    assert.ok(wait >= lifetime / 5 - 1e-6 && wait < lifetime, `${lifetime}: waits ${wait}`);
  }
});

test('relative times are short and never negative', () => {
  const now = Date.parse('2026-05-01T12:00:00Z');
  assert.equal(ago('2026-05-01T11:59:30Z', now), 'now');
  assert.equal(ago('2026-05-01T12:00:30Z', now), 'now'); // a server clock slightly ahead
  assert.equal(ago('2026-05-01T11:55:00Z', now), '5 min');
  assert.equal(ago('2026-05-01T09:00:00Z', now), '3 h');
  assert.equal(ago('not a date', now), '');
});

test('notification_read with hundreds of ids marks each read once', () => {
  const counter = new UnreadCounter();
  counter.reset(600);
  const ids = Array.from({ length: 500 }, (_, i) => `n${i}`);
  assert.deepEqual(counter.markRead(ids), ids);
  assert.equal(counter.count, 100);
  assert.ok(ids.every((id) => counter.isRead(id)));
  assert.deepEqual(counter.markRead([...ids.slice(0, 10), 'n500']), ['n500'], 'a repeated batch takes nothing twice');
  assert.equal(counter.count, 99);
  counter.reset(3);
  counter.markRead(ids.map((id) => `x${id}`));
  assert.equal(counter.count, 0, 'never below zero');
});

test('unread counting holds whatever order read and new notifications arrive in', () => {
  const counter = new UnreadCounter();
  assert.equal(counter.received({ id: 'a', read: false }), true);
  assert.equal(counter.received({ id: 'a', read: false }), false, 'counted once');
  assert.equal(counter.count, 1);
  // This tab marks `a` read, then every tab's notification_read for it arrives.
  counter.markRead(['a']);
  counter.markRead(['a']);
  assert.equal(counter.count, 0);
  // `b`'s notification_read overtook its new_notification: b is not counted, and shows read.
  counter.reset(1); // b, per the REST count
  counter.markRead(['b']);
  assert.equal(counter.received({ id: 'b', read: false }), false, 'already read');
  assert.equal(counter.isRead('b'), true);
  assert.equal(counter.count, 0);
});

test('a post_updated changes a shown post\'s content, never its counts', () => {
  const event = {
    id: 'p', author_id: 'u', text: 'edited', media_url: null,
    created_at: '2025-01-01T00:00:00.000Z', edited_at: '2025-01-01T00:01:00.000Z', like_count: 1, comment_count: 0,
  };
  assert.deepEqual(postContent(event), { text: 'edited', edited_at: '2025-01-01T00:01:00.000Z', media_url: null });
  assert.deepEqual(postContent({ ...event, edited_at: undefined, media_url: undefined }), { text: 'edited', edited_at: null });
});

test('a REST page lagging behind events shows the newest content and no deleted post', () => {
  // The home page and the post page pass REST posts through the client's LatestState.
  const latest = new LatestState();
  const base = { id: 'p', author_id: 'u', media_url: null, created_at: '2025-01-01T00:00:00.000Z', like_count: 4, comment_count: 2 };
  latest.apply({ type: 'post_updated', data: { ...base, text: 'new', edited_at: '2025-01-01T00:01:00.000Z' } });
  const shown = latest.observePost({ ...base, text: 'old', edited_at: null, like_count: 5 });
  assert.equal(shown.text, 'new');
  assert.equal(shown.like_count, 5, 'counts from the REST answer');
  latest.deletePost('p');
  assert.equal(latest.observePost({ ...base, text: 'old', edited_at: null }), null);
});
