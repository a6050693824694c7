// Who is who. Events carry ids (`author_id`, `actor_id`, `from`); REST answers carry user
// summaries. This cache turns the former into the latter, fetching a profile once.

import { seg } from './api.js';

const UNKNOWN = (id) => ({ id, username: 'unknown', display_name: 'Unknown user' });

export class Users {
  constructor(api) {
    this.api = api;
    this.summaries = new Map();
    this.profiles = new Map();
  }

  /** Records a summary (or profile) seen in a REST answer. */
  remember(user) {
    if (!user?.id) return user;
    const known = this.summaries.get(user.id);
    this.summaries.set(user.id, { ...known, id: user.id, username: user.username, display_name: user.display_name });
    return user;
  }

  /** The summary of `id`, immediately when known. */
  known(id) {
    return this.summaries.get(id) ?? null;
  }

  /** The summary of `id` (fetching the profile when unknown). */
  async get(id) {
    const known = this.summaries.get(id);
    if (known) return known;
    try {
      return this.remember(await this.profile(id));
    } catch {
      return UNKNOWN(id);
    }
  }

  /** The full profile view with the relationship to the caller; `fresh` skips the cache. */
  profile(id, { fresh = false } = {}) {
    if (fresh || !this.profiles.has(id)) {
      const request = this.api.get(`/users/${seg(id)}`).then((profile) => this.remember(profile));
      request.catch(() => this.profiles.delete(id));
      this.profiles.set(id, request);
    }
    return this.profiles.get(id);
  }

  /** Drops the cached profile (after a follow, block…). */
  forget(id) {
    this.profiles.delete(id);
  }
}
