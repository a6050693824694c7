// Pure helpers of the web app, without a browser (`make test-web` runs these first).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { refreshMargin } from '../../clients/web/api.js';
import { ago } from '../../clients/web/dom.js';

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
