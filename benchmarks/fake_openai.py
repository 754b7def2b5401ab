"""Load benchmark for fakes/openai: many headless calls, one sideband each, scripted response.done.

    .venv/bin/python benchmarks/fake_openai.py                 # 200 calls x 60 s, own fake process
    .venv/bin/python benchmarks/fake_openai.py --seconds 10    # shorter
    .venv/bin/python benchmarks/fake_openai.py --url http://127.0.0.1:8765   # an already running fake

Delay is measured from the instant the fake scheduled each ``response.done`` (carried in
``response.metadata.fake_scheduled_at``) to its arrival on the sideband, so it includes the fake's
own scheduling lag. Target: no loss, p99 <= 100 ms.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.openai.pytest_plugin import FakeOpenAI, start_fake_openai


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def listen(
    session: aiohttp.ClientSession,
    ws_url: str,
    key: str,
    call_id: str,
    delays: list[float],
    seen: dict[str, set[int]],
    closed_at: dict[str, float],
) -> None:
    async with session.ws_connect(
        f"{ws_url}/realtime?call_id={call_id}", headers={"Authorization": f"Bearer {key}"}, max_msg_size=0
    ) as ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            received = time.time()
            event = json.loads(msg.data)
            if event["type"] != "response.done":
                continue
            meta = event["response"].get("metadata") or {}
            if "fake_scheduled_at" in meta:
                delays.append((received - float(meta["fake_scheduled_at"])) * 1000)
                seen[call_id].add(int(meta["fake_scripted_seq"]))
    closed_at[call_id] = time.time()


async def run(fake: FakeOpenAI, calls: int, seconds: int, interval_ms: float) -> bool:
    delays: list[float] = []
    seen: dict[str, set[int]] = {}
    closed_at: dict[str, float] = {}
    control = fake.root_url + "/_fake"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post(path: str, body: dict) -> dict:
            async with http.post(control + path, json=body) as resp:
                resp.raise_for_status()
                return await resp.json()

        t0 = time.monotonic()
        call_ids = [c["id"] for c in await asyncio.gather(*(post("/calls", {}) for _ in range(calls)))]
        for cid in call_ids:
            seen[cid] = set()
        listeners = [
            asyncio.ensure_future(
                listen(http, fake.websocket_base_url, fake.project_key, cid, delays, seen, closed_at)
            )
            for cid in call_ids
        ]
        while True:
            info = await (await http.get(control + "/calls", params={"brief": "1"})).json()
            if sum(c["sidebands"] for c in info["calls"]) >= calls:
                break
            await asyncio.sleep(0.05)
        print(f"{calls} calls and sidebands ready in {time.monotonic() - t0:.2f} s", flush=True)

        # Scripts start one interval after their request: spread the requests over one interval so
        # the calls don't all fire in the same millisecond.
        for cid in call_ids:
            await post(
                f"/calls/{cid}/script", {"interval_ms": interval_ms, "count": seconds * 1000 // interval_ms}
            )
            await asyncio.sleep(interval_ms / 1000 / calls)
        expected_each = int(seconds * 1000 // interval_ms)
        print(
            f"scripts running: {expected_each} response.done per call, every {interval_ms:g} ms", flush=True
        )
        await asyncio.sleep(seconds + interval_ms / 1000 + 1)

        info = await (await http.get(control + "/calls", params={"brief": "1"})).json()
        emitted = sum((c["script"] or {}).get("sent", 0) for c in info["calls"])

        hangup_started = {}

        async def hangup(cid: str) -> None:
            hangup_started[cid] = time.time()
            async with http.post(
                f"{fake.base_url}/realtime/calls/{cid}/hangup",
                headers={"Authorization": f"Bearer {fake.project_key}"},
            ) as resp:
                resp.raise_for_status()

        await asyncio.gather(*(hangup(cid) for cid in call_ids))
        await asyncio.wait(listeners, timeout=5)

    expected = calls * expected_each
    delivered = sum(len(s) for s in seen.values())
    lost = expected - delivered
    close_ms = [(closed_at[c] - hangup_started[c]) * 1000 for c in call_ids if c in closed_at]
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    print(f"expected {expected}  emitted by fake {emitted}  delivered {delivered}  lost {lost}")
    print(
        f"delay ms: p50 {p50:.1f}  p99 {p99:.1f}  max {max(delays or [float('nan')]):.1f}  "
        f"mean {statistics.fmean(delays) if delays else float('nan'):.1f}"
    )
    print(
        f"sideband closed after hangup, ms: p50 {percentile(close_ms, 50):.1f}  p99 {percentile(close_ms, 99):.1f}"
        f"  ({len(close_ms)}/{calls} closed)"
    )
    ok = lost == 0 and p99 <= 100
    print("PASS" if ok else "FAIL", "(target: no loss, p99 <= 100 ms)")
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=200)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--interval-ms", type=int, default=1000)
    p.add_argument("--url", help="root URL of a running fake (default: start one with --no-media)")
    args = p.parse_args()
    fake = FakeOpenAI(args.url) if args.url else start_fake_openai("--no-media")
    try:
        ok = asyncio.run(run(fake, args.calls, args.seconds, args.interval_ms))
    finally:
        fake.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
