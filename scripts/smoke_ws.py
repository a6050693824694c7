#!/usr/bin/env python3
"""WebSocket half of scripts/smoke.sh: one Ripple client socket, driven over stdin/stdout.

    SMOKE_WS_TOKEN=<access token> smoke_ws.py WS_URL --timeout SECONDS

The token comes from the environment, never from the command line (where `ps` would show it).

Protocol with the calling script (one line each):
  stdout  `connected`                     the handshake succeeded with subprotocol ripple.v1
  stdin   `<post_id> <sent_at_epoch_s>`   the post to wait for and when its REST call returned
  stdout  `received <event_id> <ms>`      `post_created` for that post arrived; <ms> after sent_at
Events that arrive before the stdin line are kept, so a fast push is not missed. Any failure
(handshake refused, wrong subprotocol, socket closed, timeout, bad input) is one line on
stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

SUBPROTOCOL = "ripple.v1"
# Longest frame accepted; Ripple's events are a few KiB.
MAX_FRAME_BYTES = 256 * 1024


def fail(message: str) -> int:
    print(f"smoke_ws: {message}", file=sys.stderr, flush=True)
    return 1


def event_type(raw: str | bytes) -> str:
    try:
        event = json.loads(raw)
    except ValueError:
        return "<not JSON>"
    return str(event.get("type", "?")) if isinstance(event, dict) else "<not an object>"


def post_created_for(raw: str | bytes, post_id: str) -> dict | None:
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "post_created":
        return None
    data = event.get("data")
    if isinstance(data, dict) and data.get("id") == post_id:
        return event
    return None


async def run(url: str, token: str, timeout: float) -> int:
    try:
        socket = await asyncio.wait_for(
            connect(url, subprotocols=[SUBPROTOCOL, token], max_size=MAX_FRAME_BYTES, open_timeout=timeout),
            timeout,
        )
    except InvalidStatus as error:
        return fail(f"handshake refused with HTTP {error.response.status_code} by {url}")
    except (InvalidHandshake, OSError, asyncio.TimeoutError) as error:
        return fail(f"cannot connect to {url}: {type(error).__name__}: {error}")
    async with socket:
        if socket.subprotocol != SUBPROTOCOL:
            return fail(f"server selected subprotocol {socket.subprotocol!r}, expected {SUBPROTOCOL!r}")
        received: list[str | bytes] = []
        arrived = asyncio.Event()

        async def reader() -> None:
            try:
                async for frame in socket:
                    received.append(frame)
                    arrived.set()
            except ConnectionClosed:
                pass  # reported below through socket.close_code
            finally:
                arrived.set()

        reading = asyncio.create_task(reader())
        print("connected", flush=True)

        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        parts = line.split()
        if len(parts) != 2:
            return fail(f"expected '<post_id> <sent_at>' on stdin, got {line.strip()!r}")
        post_id, sent_at = parts[0], float(parts[1])

        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for raw in received[seen:]:
                event = post_created_for(raw, post_id)
                if event is not None:
                    latency_ms = (time.time() - sent_at) * 1000
                    print(f"received {event.get('event_id')} {latency_ms:.0f}", flush=True)
                    reading.cancel()
                    return 0
            seen = len(received)
            if reading.done():
                return fail(f"the socket closed (code {socket.close_code}) before post_created for {post_id} arrived")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kinds = [event_type(raw) for raw in received]
                return fail(f"no post_created for post {post_id} within {timeout:g} s (received: {kinds or 'nothing'})")
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    token = os.environ.get("SMOKE_WS_TOKEN", "")
    if not token:
        return fail("SMOKE_WS_TOKEN is not set")
    try:
        return asyncio.run(run(args.url, token, args.timeout))
    except KeyboardInterrupt:
        return fail("interrupted")


if __name__ == "__main__":
    sys.exit(main())
