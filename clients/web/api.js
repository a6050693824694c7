// The REST side: one `Api` per page with the session (access + refresh token), refreshed
// before the access token expires, shared across tabs through localStorage and serialised
// with a Web Lock, because a refresh token is single-use: two tabs refreshing with the same
// token would end one of the sessions.

const STORAGE_KEY = 'ripple.session';
/** Wait between refresh attempts that failed for want of a network. */
const REFRESH_RETRY_MS = 5 * 1000;

/**
 * How long before expiry to refresh: a minute for the usual 15-minute token; for lifetimes
 * under 75 s, 80 % of it, so the next refresh is always at least a fifth of the lifetime away
 * and a short-lived token cannot cause a refresh loop.
 */
export function refreshMargin(lifetimeMs) {
  return Math.min(60 * 1000, lifetimeMs * 0.8);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  /** @param {string} baseUrl e.g. http://127.0.0.1:3000 (no trailing slash) */
  constructor(baseUrl, { onSessionEnded } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.onSessionEnded = onSessionEnded ?? (() => {});
    this.session = readStored();
    this.refreshTimer = null;
    this.refreshing = null;
    // Another tab logged in, refreshed or logged out.
    window.addEventListener('storage', (event) => {
      if (event.key !== STORAGE_KEY) return;
      const stored = readStored();
      if (!stored && this.session) {
        this.session = null;
        this.onSessionEnded('signed out in another tab');
      } else if (stored && this.session && stored.user?.id !== this.session.user?.id) {
        // Another account signed in in another tab: this page shows the old one's data.
        location.reload();
      } else if (stored) {
        this.session = stored;
        this.scheduleRefresh();
      }
    });
    if (this.session) this.scheduleRefresh();
  }

  get user() {
    return this.session?.user ?? null;
  }

  set user(user) {
    if (!this.session) return;
    this.session = { ...this.session, user };
    writeStored(this.session);
  }

  async register(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    this.start(await this.call('POST', '/auth/register', body, { auth: false }));
  }

  async login(username, password) {
    this.start(await this.call('POST', '/auth/login', { username, password }, { auth: false }));
  }

  async logout() {
    const refresh = this.session?.refreshToken;
    if (refresh) {
      // Ends the session server side too; signing out locally must not depend on it.
      await this.call('POST', '/auth/logout', { refresh_token: refresh }).catch(() => {});
    }
    this.end();
  }

  start(session) {
    this.session = {
      user: session.user,
      accessToken: session.access_token,
      refreshToken: session.refresh_token,
      expiresAt: Date.now() + session.expires_in * 1000,
      lifetimeMs: session.expires_in * 1000,
    };
    writeStored(this.session);
    this.scheduleRefresh();
  }

  end() {
    clearTimeout(this.refreshTimer);
    this.session = null;
    localStorage.removeItem(STORAGE_KEY);
  }

  /** Schedules the next refresh; after a failed one (offline…) not sooner than `atLeastMs`. */
  scheduleRefresh(atLeastMs = 0) {
    clearTimeout(this.refreshTimer);
    if (!this.session) return;
    const wait = Math.max(atLeastMs, this.session.expiresAt - Date.now() - this.margin());
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), wait);
  }

  margin() {
    return refreshMargin(this.session?.lifetimeMs ?? 15 * 60 * 1000);
  }

  /** An access token valid for at least the margin (refreshing first when needed). */
  async freshAccessToken() {
    if (!this.session) throw new Error('signed out');
    if (this.session.expiresAt - Date.now() < this.margin()) await this.refresh();
    return this.session.accessToken;
  }

  /** Rotates the refresh token; at most one refresh at a time across every tab. */
  refresh() {
    if (this.refreshing) return this.refreshing;
    const run = async () => {
      const stored = readStored();
      // Another tab refreshed while this one waited for the lock: take its session.
      if (stored && stored.refreshToken !== this.session?.refreshToken) {
        this.session = stored;
        return;
      }
      if (!this.session) throw new Error('signed out');
      try {
        const session = await this.call('POST', '/auth/refresh', { refresh_token: this.session.refreshToken }, { auth: false });
        this.start(session);
      } catch (error) {
        if (error.status === 401 || error.status === 400) {
          this.end();
          this.onSessionEnded('your session has expired');
        }
        throw error;
      }
    };
    const locked = navigator.locks ? () => navigator.locks.request('ripple.refresh', run) : run;
    let failed = false;
    this.refreshing = locked()
      .catch((error) => {
        failed = true;
        throw error;
      })
      .finally(() => {
        this.refreshing = null;
        // A failed refresh (network down) is retried every few seconds, not in a loop.
        this.scheduleRefresh(failed ? REFRESH_RETRY_MS : 0);
      });
    return this.refreshing;
  }

  /** JSON in, JSON out; a non-2xx answer throws an ApiError with the server's code. */
  async call(method, path, body, { auth = true, retried = false } = {}) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth) headers.authorization = `Bearer ${await this.freshAccessToken()}`;
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 'network', 'The server cannot be reached. Check your connection.');
    }
    if (response.status === 401 && auth && !retried && this.session) {
      // Revoked or expired early (clock skew): one refresh, one retry.
      await this.refresh();
      return this.call(method, path, body, { auth, retried: true });
    }
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      const error = json?.error ?? {};
      const retryAfter = response.headers.get('retry-after');
      const message =
        response.status === 429 && retryAfter
          ? `Slow down: try again in ${retryAfter} s.`
          : error.message ?? json?.message ?? `Request failed (${response.status}).`;
      throw new ApiError(response.status, error.code ?? 'http_error', message);
    }
    return json;
  }

  get(path) {
    return this.call('GET', path);
  }
  post(path, body = {}) {
    return this.call('POST', path, body);
  }
  put(path) {
    return this.call('PUT', path);
  }
  patch(path, body) {
    return this.call('PATCH', path, body);
  }
  delete(path) {
    return this.call('DELETE', path);
  }
}

function readStored() {
  try {
    const session = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? 'null');
    return session?.accessToken && session?.refreshToken ? session : null;
  } catch {
    return null;
  }
}

function writeStored(session) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

/** `encodeURIComponent` for a path segment. */
export const seg = (value) => encodeURIComponent(value);
