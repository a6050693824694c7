#!/usr/bin/env node
// The web app in a real browser: Debian's chromium driven by playwright-core, two users in
// two browser contexts (A: desktop window, B: a 375 px phone) against a local gateway this
// script starts (`ripple-local --in-memory`, free ports). `make test-web` runs it.
//
//   node tests/web/e2e.mjs [--gateway target/debug/ripple-local] [--moto-server .venv/bin/moto_server]
//                          [--app-url http://127.0.0.1:3000/app/]   (use a running `make dev` instead)
//
// Flow: B follows A; A posts and B's feed shows it live (no reload) within 2 s; B likes it
// and A's bell badge counts it (and uncounts it when a second tab of A reads it); A opens a
// DM to B and types, B sees the typing indicator and then the message; B's socket is killed
// (a TCP relay in front of the WebSocket API resets it and refuses B for a while), B shows
// reconnecting, then connected, and a DM sent meanwhile arrives by resume; `<img src=x onerror=alert(1)>` is shown as text in a post and a DM, and
// no dialog ever opens; scrolled down, B gets a "1 new post" pill instead of a moving feed;
// both sessions refresh their access tokens (75 s here) before expiry. Screenshots of both
// windows go to target/e2e/ (window-a.png, window-b.png; steps/ for the rest) on every run,
// also on failure.
//
// Skips (exit 0, with a message) only when chromium is not installed, which `make chromium`
// does wherever apt-get can run.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'target/e2e');
const CHROMIUM = process.env.RIPPLE_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const XSS = '<img src=x onerror=alert(1)>';
/** Generous waits: a busy CI box runs debug builds. The 2 s one is the product promise. */
const WAIT = 15_000;
const LIVE_POST_MS = 2_000;
const ACCESS_TOKEN_TTL_SECONDS = 75;

const { values: options } = parseArgs({
  options: {
    gateway: { type: 'string', default: path.join(ROOT, 'target/debug/ripple-local') },
    'moto-server': { type: 'string', default: path.join(ROOT, '.venv/bin/moto_server') },
    'app-url': { type: 'string' },
  },
});

const started = Date.now();
const log = (message) => console.log(`web-e2e [${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${message}`);

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

/** Starts ripple-local on free ports; resolves with {appUrl, stop}. */
async function startGateway() {
  check(existsSync(options.gateway), `${options.gateway} is missing: cargo build -p ripple-local`);
  check(existsSync(options['moto-server']), `${options['moto-server']} is missing: make tools`);
  const child = spawn(options.gateway, [
    '--template', path.join(ROOT, 'template.yaml'),
    '--web-root', path.join(ROOT, 'clients/web'),
    '--web-lib', path.join(ROOT, 'clients/js'),
    '--in-memory', '--http-port', '0', '--ws-port', '0',
    '--moto-server', options['moto-server'],
    // 75 s access tokens: the page refreshes them 60 s before expiry, so within the run.
    '--env', `ACCESS_TOKEN_TTL_SECONDS=${ACCESS_TOKEN_TTL_SECONDS}`,
  ], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 200) stderr.shift();
  });
  const stop = async () => {
    if (child.exitCode !== null) return;
    child.kill('SIGINT');
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  const appUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('ripple-local printed no banner within 120 s')), 120_000);
    child.once('exit', (code) => reject(new Error(`ripple-local exited (${code}):\n${stderr.join('\n')}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const match = line.match(/Web app:\s+(\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return { appUrl, stop, stderr };
}

/** The WebSocket URL the app's config.js names (the gateway's own). */
async function websocketUrl(appUrl) {
  const config = await (await fetch(new URL('config.js', appUrl))).text();
  const match = config.match(/"wsUrl":"([^"]+)"/);
  check(match, `no wsUrl in ${appUrl}config.js: ${config}`);
  return match[1];
}

/**
 * A TCP relay in front of the WebSocket API: `kill()` resets every connection through it
 * (the page sees an abnormal close, as on a network drop) and refuses new ones until
 * `restore()`.
 */
async function startRelay(target) {
  const upstream = new URL(target);
  const sockets = new Set();
  let refusing = false;
  const relay = { killed: 0 };
  const server = net.createServer((client) => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const server = net.connect(Number(upstream.port), upstream.hostname);
    const pair = [client, server];
    for (const socket of pair) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        for (const other of pair) other.destroy();
      });
    }
    client.pipe(server);
    server.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const relayed = new URL(target);
  relayed.port = String(server.address().port);
  return Object.assign(relay, {
    url: relayed.toString().replace(/\/$/, ''),
    kill() {
      refusing = true;
      for (const socket of sockets) {
        if (socket.remotePort !== Number(upstream.port)) relay.killed += 1;
        socket.resetAndDestroy();
      }
    },
    restore() {
      refusing = false;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  });
}

/** A user in a browser context: its page, with dialogs and page errors recorded. */
async function openUser(browser, name, viewport, appUrl, problems) {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('dialog', async (dialog) => {
    problems.push(`${name}: a ${dialog.type()} dialog opened: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  page.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
  const user = { name, context, page, refreshes: 0 };
  page.on('response', (response) => {
    if (response.url().endsWith('/auth/refresh') && response.status() === 200) user.refreshes += 1;
    if (response.status() >= 400) console.log(`  [${name}] ${response.request().method()} ${response.url()} -> ${response.status()}`);
  });
  page.on('console', (message) => {
    if (message.type() === 'error') console.log(`  [${name} console] ${message.text()}`);
  });
  await page.goto(appUrl);
  return user;
}

async function register(user, username) {
  const { page } = user;
  await page.click('#auth-switch');
  await page.fill('#auth-username', username);
  await page.fill('#auth-display-name', `${user.name === 'A' ? 'Alice' : 'Bob'} ${username.slice(-4)}`);
  await page.fill('#auth-password', 'correct horse battery');
  await page.click('#auth-submit');
  await page.waitForSelector('#connection-status[data-state="connected"]');
  user.id = await page.evaluate(() => JSON.parse(localStorage.getItem('ripple.session')).user.id);
  user.username = username;
}

/** Records every value of the connection status (a MutationObserver in the page). */
async function watchStatus(page) {
  await page.evaluate(() => {
    const status = document.getElementById('connection-status');
    window.statusLog = [status.dataset.state];
    new MutationObserver(() => {
      const state = status.dataset.state;
      if (window.statusLog.at(-1) !== state) window.statusLog.push(state);
    }).observe(status, { attributes: true, attributeFilter: ['data-state'] });
  });
}

/** target/e2e/{label}-a.png and -b.png; steps go to target/e2e/steps/. */
async function screenshots(a, b, label) {
  const folder = label.startsWith('window') ? OUT : path.join(OUT, 'steps');
  mkdirSync(folder, { recursive: true });
  for (const user of [a, b]) {
    if (!user?.page || user.page.isClosed()) continue;
    const file = path.join(folder, `${label}-${user.name === 'A' ? 'a' : 'b'}.png`);
    // No hover highlight from the last click in the picture.
    await user.page.mouse.move(1, user.page.viewportSize().height - 1).catch(() => {});
    await user.page.screenshot({ path: file, fullPage: false }).catch(() => {});
    log(`screenshot ${path.relative(ROOT, file)}`);
  }
}

async function flow(a, b, problems) {
  const suffix = `${Date.now().toString(36).slice(-5)}${Math.floor(Math.random() * 1e4)}`;
  await register(a, `alice_${suffix}`);
  await register(b, `bob_${suffix}`);
  log(`registered ${a.username} (A) and ${b.username} (B)`);

  // B follows A (People → search → profile → Follow).
  await b.page.click('a[data-nav="people"]');
  await b.page.fill('#people-search', a.username);
  await b.page.click(`a[href="#/u/${a.id}"]`);
  await b.page.click('[data-testid="follow"]');
  await b.page.waitForSelector('[data-testid="unfollow"]');
  log('B follows A');

  // A posts; B's feed shows it without a reload within 2 s of the REST response.
  await b.page.click('a[data-nav="home"]');
  await b.page.waitForSelector('#feed[aria-busy="false"]', { state: 'attached' });
  await b.page.evaluate(() => {
    window.notReloaded = true;
  });
  const text = `Hello from A, live (${suffix})`;
  await a.page.fill('#composer-text', text);
  const [response] = await Promise.all([
    a.page.waitForResponse((r) => r.url().endsWith('/posts') && r.request().method() === 'POST'),
    a.page.click('#composer-submit'),
  ]);
  check(response.status() === 201, `POST /posts answered ${response.status()}`);
  const posted = Date.now();
  const postInB = b.page.locator('.post', { hasText: text });
  await postInB.waitFor({ timeout: LIVE_POST_MS });
  log(`B's feed shows A's post ${Date.now() - posted} ms after the REST response`);
  check(await b.page.evaluate(() => window.notReloaded === true), "B's page was reloaded");
  await a.page.locator('.post', { hasText: text }).waitFor();
  const late = await a.page.textContent('[data-testid="diag-lateRefetches"]');
  log(`A's own post arrived by post_created (late refetches: ${late})`);

  // B likes it; A's bell badge counts the notification (A already has B's follow unread).
  const unread = () => a.page.evaluate(() => {
    const badge = document.getElementById('bell-badge');
    return badge.hidden ? 0 : Number(badge.textContent);
  });
  const unreadBefore = await unread();
  await postInB.locator('[data-testid="like"]').click();
  await a.page.waitForFunction((before) => {
    const badge = document.getElementById('bell-badge');
    return !badge.hidden && Number(badge.textContent) === before + 1;
  }, unreadBefore);
  await a.page.locator('.post', { hasText: text }).locator('[data-testid="like-count"]', { hasText: '1' }).waitFor();
  log(`B liked A's post; A's bell went from ${unreadBefore} to ${unreadBefore + 1}, A's card shows 1 like`);
  // A second tab of A reads a notification: the first tab's badge follows (notification_read).
  const tab = await a.context.newPage();
  tab.on('dialog', (dialog) => problems.push(`A (tab 2): a dialog opened: ${dialog.message()}`));
  await tab.goto(`${a.page.url().split('#')[0]}#/notifications`);
  await tab.locator('.notification.unread', { hasText: 'liked your post' }).click();
  await a.page.waitForFunction((before) => {
    const badge = document.getElementById('bell-badge');
    return !badge.hidden && Number(badge.textContent) === before;
  }, unreadBefore);
  await tab.close();
  log(`a second tab of A read the like notification; A's first tab went back to ${unreadBefore}`);
  await screenshots(a, b, '1-feed');

  // A opens a DM to B and types; B (in the thread with A) sees typing, then the message.
  await b.page.goto(`${b.page.url().split('#')[0]}#/messages/${a.id}`);
  await b.page.waitForSelector('#connection-status[data-state="connected"]');
  await a.page.goto(`${a.page.url().split('#')[0]}#/u/${b.id}`);
  await a.page.click('[data-testid="message"]');
  await a.page.waitForSelector('#message-text');
  await a.page.locator('#message-text').pressSequentially('Hi Bob, are you there?', { delay: 40 });
  await b.page.waitForSelector('[data-testid="typing"]:not([hidden])');
  log('B sees A typing');
  await a.page.press('#message-text', 'Enter');
  await b.page.locator('.message.theirs', { hasText: 'Hi Bob, are you there?' }).waitFor();
  await b.page.waitForSelector('[data-testid="typing"][hidden]', { state: 'attached' });
  log('B got the message; the typing indicator is gone');

  // B's socket is killed (its TCP connection reset by the relay) and B cannot reconnect for a
  // while; A writes meanwhile; B comes back, shows reconnecting then connected, and the
  // message arrives by resume.
  await watchStatus(b.page);
  const resumesBefore = Number(await b.page.textContent('[data-testid="diag-resumes"]'));
  b.relay.kill();
  await b.page.waitForFunction(() => document.getElementById('connection-status').dataset.state !== 'connected');
  await b.page.click('#diagnostics summary');
  const whileAway = `Sent while you were away (${suffix})`;
  await a.page.fill('#message-text', whileAway);
  await a.page.press('#message-text', 'Enter');
  await a.page.locator('.message.mine:not(.pending)', { hasText: whileAway }).waitFor();
  await b.page.waitForTimeout(1000);
  check(await b.page.locator('.message', { hasText: whileAway }).count() === 0, 'B received the DM while disconnected');
  b.relay.restore();
  await b.page.waitForSelector('#connection-status[data-state="connected"]');
  await b.page.locator('.message.theirs', { hasText: whileAway }).waitFor();
  await b.page.waitForFunction((before) => Number(document.querySelector('[data-testid="diag-resumes"]').textContent) > before, resumesBefore);
  const statusLog = await b.page.evaluate(() => window.statusLog);
  const replayed = Number(await b.page.textContent('[data-testid="diag-replayed"]'));
  log(`B's status went ${statusLog.join(' → ')}; resume replayed ${replayed} event(s)`);
  check(b.relay.killed >= 1, 'the relay killed no socket of B');
  check(statusLog.includes('reconnecting'), `B never showed reconnecting: ${statusLog.join(', ')}`);
  check(statusLog.at(-1) === 'connected', `B did not end connected: ${statusLog.join(', ')}`);
  check(statusLog.indexOf('reconnecting') < statusLog.lastIndexOf('connected'), 'reconnecting came after connected');
  check(replayed >= 1, 'the DM sent meanwhile was not replayed by resume');

  // Markup in user text is shown as text, in a DM and in a post; no dialog opens.
  await a.page.fill('#message-text', XSS);
  await a.page.press('#message-text', 'Enter');
  await b.page.locator('.message.theirs .message-text', { hasText: XSS }).waitFor();
  await screenshots(a, b, '2-messages');
  await a.page.click('a[data-nav="home"]');
  await a.page.fill('#composer-text', XSS);
  await a.page.click('#composer-submit');
  await b.page.click('a[data-nav="home"]');
  const xssPost = b.page.locator('.post .post-text', { hasText: XSS });
  await xssPost.waitFor();
  check((await xssPost.textContent()) === XSS, 'the post text is not the literal markup');
  await a.page.locator('.post .post-text', { hasText: XSS }).waitFor();
  for (const user of [a, b]) {
    const injected = await user.page.locator('main img[src="x"]').count();
    check(injected === 0, `${user.name}: user text became an <img> element`);
  }
  await b.page.waitForTimeout(500);
  check(problems.length === 0, problems.join('\n'));
  log(`markup shown as text in ${a.name}'s and ${b.name}'s windows; no dialog`);

  // The windows for the record: A's feed (bell, likes), B's thread with A on a phone.
  await b.page.goto(`${b.page.url().split('#')[0]}#/messages/${a.id}`);
  await b.page.locator('.message.theirs', { hasText: whileAway }).waitFor();
  await b.page.waitForSelector('#connection-status[data-state="connected"]');
  await a.page.locator('#feed .post').nth(1).waitFor();
  await screenshots(a, b, 'window');

  // Scrolled down, B gets a "1 new post" pill instead of a feed that moves under the thumb.
  await b.page.click('a[data-nav="home"]');
  await b.page.waitForSelector('#feed[aria-busy="false"]', { state: 'attached' });
  for (let i = 1; i <= 4; i += 1) {
    await a.page.fill('#composer-text', `Filler post ${i} of 4, long enough to take some room on a phone screen (${suffix}).`);
    await a.page.click('#composer-submit');
    await b.page.locator('.post', { hasText: `Filler post ${i} of 4` }).waitFor();
  }
  await b.page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
  await b.page.waitForFunction(() => window.scrollY > 240);
  const whileScrolled = `Posted while B was scrolled down (${suffix})`;
  await a.page.fill('#composer-text', whileScrolled);
  await a.page.click('#composer-submit');
  await b.page.waitForSelector('[data-testid="new-posts-pill"]:not([hidden])');
  check((await b.page.textContent('[data-testid="new-posts-pill"]')).includes('1 new post'), 'the pill does not count 1 new post');
  check(await b.page.locator('.post', { hasText: whileScrolled }).count() === 0, 'the new post moved the feed while B was scrolled down');
  await screenshots(a, b, '3-pill');
  await b.page.click('[data-testid="new-posts-pill"]');
  await b.page.locator('#feed .post').first().filter({ hasText: whileScrolled }).waitFor();
  log('scrolled down, B got a "1 new post" pill; pressing it put the post on top');

  // Both sessions were refreshed before their access tokens expired (only checked against the
  // gateway this script starts, whose tokens live 75 s), and the pages still work after it.
  if (!options['app-url']) {
    const deadline = Date.now() + ACCESS_TOKEN_TTL_SECONDS * 1000;
    while ((a.refreshes < 1 || b.refreshes < 1) && Date.now() < deadline) await a.page.waitForTimeout(250);
    check(a.refreshes >= 1 && b.refreshes >= 1, `tokens were not refreshed (A ${a.refreshes}, B ${b.refreshes})`);
    await a.page.click('a[data-nav="notifications"]');
    await a.page.locator('.notification').first().waitFor();
    log(`access tokens refreshed before expiry (A ${a.refreshes}×, B ${b.refreshes}×); A's next request works`);
  }
}

async function main() {
  if (!existsSync(CHROMIUM)) {
    console.log(`web-e2e: SKIPPED - ${CHROMIUM} is not installed (make chromium installs it with apt-get; ` +
      'this machine could not). Set RIPPLE_CHROMIUM to use another Chromium.');
    return;
  }
  // Only this run's screenshots: a failure never leaves an older success's pictures behind.
  rmSync(OUT, { recursive: true, force: true });
  const { chromium } = await import('playwright-core');
  const gateway = options['app-url'] ? { appUrl: options['app-url'], stop: async () => {}, stderr: [] } : await startGateway();
  log(`app at ${gateway.appUrl}`);
  // playwright-core adds --headless and a fresh, temporary --user-data-dir to every launch
  // (checked: `ps` shows --user-data-dir=/tmp/playwright_chromiumdev_profile-…).
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  log(`browser: chromium ${browser.version()}`);
  const problems = [];
  let a;
  let b;
  let relay;
  try {
    a = await openUser(browser, 'A', { width: 1100, height: 820 }, gateway.appUrl, problems);
    // B's WebSocket goes through a relay the test can cut (?ws= overrides config.js).
    relay = await startRelay(await websocketUrl(gateway.appUrl));
    const bUrl = `${gateway.appUrl}?ws=${encodeURIComponent(relay.url)}`;
    b = await openUser(browser, 'B', { width: 375, height: 812 }, bUrl, problems);
    b.relay = relay;
    await flow(a, b, problems);
    log('passed');
  } catch (error) {
    await screenshots(a, b, 'window-failure');
    if (gateway.stderr.length) console.error(`ripple-local stderr (last lines):\n${gateway.stderr.slice(-40).join('\n')}`);
    throw error;
  } finally {
    await browser.close().catch(() => {});
    relay?.close();
    await gateway.stop();
  }
}

main().catch((error) => {
  console.error(`web-e2e: FAILED - ${error.stack ?? error}`);
  process.exit(1);
});
