#!/usr/bin/env python3
"""The REST contract under generated input: schemathesis against docs/openapi.yaml.

Starts ripple-local (in memory, free ports), registers two fresh users (the caller, whose
bearer token authenticates every request, and another user, so ids of real other users
exist), gives them posts, follows both ways and a message, writes both ids into a
schemathesis dictionary for `user_id` parameters, runs `schemathesis run` with the
repository's schemathesis.toml (phases, checks, bounds and every accepted exception live
there, each with its reason), stops the stack and exits with schemathesis' status.
`make test-contract` runs it.

    contract_test.py [--gateway target/debug/ripple-local] [--moto-server .venv/bin/moto_server]
                     [--schemathesis .venv/bin/schemathesis] [-- extra schemathesis run args]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "contract"
BANNER_TIMEOUT_SECONDS = 120
PASSWORD = "contract test password"


def parse_args() -> argparse.Namespace:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    venv = ROOT / ".venv" / "bin"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", default=str(target / "debug" / "ripple-local"))
    parser.add_argument("--moto-server", default=str(venv / "moto_server"))
    parser.add_argument("--schemathesis", default=str(venv / "schemathesis"))
    parser.add_argument("--config", default=str(ROOT / "schemathesis.toml"))
    parser.add_argument("--spec", default=str(ROOT / "docs" / "openapi.yaml"))
    parser.add_argument("extra", nargs="*", help="extra `schemathesis run` arguments (after --)")
    return parser.parse_args()


class Gateway:
    """ripple-local on free ports; `url` is its HTTP API once the banner is printed."""

    def __init__(self, executable: str, moto_server: str):
        for path, hint in ((executable, "cargo build -p ripple-local"), (moto_server, "make tools")):
            if not Path(path).exists():
                sys.exit(f"contract: {path} is missing ({hint})")
        OUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / "ripple-local.log"
        self.log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [executable, "--template", str(ROOT / "template.yaml"), "--in-memory",
             "--http-port", "0", "--ws-port", "0", "--no-web-app", "--moto-server", moto_server],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True,
            start_new_session=True,
        )
        self.url = self._await_banner()

    def _await_banner(self) -> str:
        found: list[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.log.write(line)
                match = re.search(r"HTTP API:\s+(\S+)", line)
                if match and not found:
                    found.append(match.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + BANNER_TIMEOUT_SECONDS
        while not found:
            if self.process.poll() is not None:
                self.log.flush()
                sys.exit(f"contract: ripple-local exited ({self.process.returncode}); see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"contract: ripple-local printed no banner within {BANNER_TIMEOUT_SECONDS} s")
            time.sleep(0.1)
        return found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def call(base_url: str, method: str, path: str, body: dict | None, token: str | None = None) -> dict:
    """One JSON request that must succeed; returns the decoded body ({} when empty)."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base_url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        sys.exit(f"contract: setup {method} {path} answered {error.code}: {error.read()!r}")
    return json.loads(raw) if raw else {}


def register(base_url: str, prefix: str) -> dict:
    """A fresh account; returns the session (`user`, `access_token`, …)."""
    body = {"username": f"{prefix}_{secrets.token_hex(6)}", "password": PASSWORD}
    return call(base_url, "POST", "/auth/register", body)


def seed(base_url: str, caller: dict, other: dict) -> None:
    """Some of everything between the two users, so list responses have items to check
    against their schemas (and the stateful phase has ids to follow)."""
    caller_id, other_id = caller["user"]["id"], other["user"]["id"]
    steps = [
        (other, "POST", "/posts", {"text": "a post of the other user"}),
        (caller, "POST", "/posts", {"text": "a post of the caller"}),
        (other, "PUT", f"/users/{caller_id}/follow", None),
        (caller, "PUT", f"/users/{other_id}/follow", None),
        (other, "POST", f"/conversations/{caller_id}/messages", {"text": "hello"}),
    ]
    for session, method, path, body in steps:
        call(base_url, method, path, body, session["access_token"])


def main() -> int:
    args = parse_args()
    gateway = Gateway(args.gateway, args.moto_server)
    try:
        caller = register(gateway.url, "contract")
        other = register(gateway.url, "other")
        seed(gateway.url, caller, other)
        # libFuzzer dictionary format, one quoted value a line (schemathesis.toml: `user-ids`).
        ids = [other["user"]["id"], caller["user"]["id"]]
        (OUT / "user-ids.dict").write_text("".join(f'"{i}"\n' for i in ids), encoding="utf-8")
        print(f"contract: {gateway.url}, caller {caller['user']['id']}, other user {ids[0]}", flush=True)
        env = dict(os.environ, RIPPLE_CONTRACT_TOKEN=caller["access_token"])
        command = [
            args.schemathesis, "--config-file", args.config, "run", args.spec,
            "--url", gateway.url, "--report", "junit", "--report-junit-path", str(OUT / "junit.xml"),
            *args.extra,
        ]
        return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    finally:
        gateway.stop()


if __name__ == "__main__":
    sys.exit(main())
