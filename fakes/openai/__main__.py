"""``python -m fakes.openai --host 127.0.0.1 --port 8765``"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from aiohttp import web

from fakes.openai.config import FakeConfig, parse_admin_key, parse_project_key
from fakes.openai.server import make_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fakes.openai", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (see --ready-file)")
    p.add_argument(
        "--project-key",
        action="append",
        default=[],
        metavar="KEY[:PROJECT_ID]",
        help="accepted project key (repeatable); default sk-proj-fake in project proj_fake",
    )
    p.add_argument(
        "--admin-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accepted admin key (repeatable); default sk-admin-fake",
    )
    p.add_argument(
        "--no-media",
        action="store_true",
        help="answer /v1/realtime/calls with a synthetic SDP and no media peer (headless calls)",
    )
    p.add_argument(
        "--usage-db",
        default=":memory:",
        metavar="PATH",
        help="SQLite file for served usage (default: in memory)",
    )
    p.add_argument(
        "--sideband-404-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a fresh call answers sideband upgrades with 404 for this long",
    )
    p.add_argument(
        "--sideband-requires-connection",
        action=argparse.BooleanOptionalAction,
        default=True,
        # Reference §3 "Timing": attaching right after POST /calls fails with 404 "No session found
        # for the provided call_id" until the browser completes ICE/DTLS (several projects observed it).
        help="answer 404 until the call's WebRTC connection is up, as OpenAI does (default: on)",
    )
    p.add_argument(
        "--sideband-hello",
        choices=("none", "session.created", "session.updated"),
        default="none",
        help="event sent to a sideband when it attaches (unverified upstream behaviour)",
    )
    p.add_argument("--session-cap-seconds", type=float, default=3600.0)
    p.add_argument(
        "--connect-timeout-seconds",
        type=float,
        default=30.0,
        help="end a WebRTC call whose caller has not connected by then (0: never)",
    )
    p.add_argument(
        "--ephemeral-usage-under-minting-key",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="report ek_ usage under the minting project key's id (else api_key_id null)",
    )
    p.add_argument("--call-not-found-status", type=int, choices=(400, 404), default=404)
    p.add_argument("--latency-ms", type=float, default=0.0, help="extra latency on every /v1 request")
    p.add_argument("--words-per-second", type=float, default=3.0, help="speaking rate of the fake assistant")
    p.add_argument("--delta-interval-ms", type=float, default=20.0, help="pause between transcript deltas")
    p.add_argument("--parent-pid", type=int, help="exit when this process is gone (test runners that crash)")
    p.add_argument("--ready-file", type=Path, help="write the bound port here once listening")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    return FakeConfig(
        project_keys=[parse_project_key(k) for k in args.project_key],
        admin_keys=[parse_admin_key(k) for k in args.admin_key],
        media=not args.no_media,
        usage_db=args.usage_db,
        sideband_404_delay=args.sideband_404_delay,
        sideband_requires_connection=args.sideband_requires_connection,
        sideband_hello=args.sideband_hello,
        session_cap_seconds=args.session_cap_seconds,
        connect_timeout_seconds=args.connect_timeout_seconds,
        ephemeral_usage_under_minting_key=args.ephemeral_usage_under_minting_key,
        call_not_found_status=args.call_not_found_status,
        latency_ms=args.latency_ms,
        words_per_second=args.words_per_second,
        delta_interval_ms=args.delta_interval_ms,
    )


async def serve(args: argparse.Namespace) -> None:
    runner = web.AppRunner(make_app(config_from_args(args)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(
        f"fakes.openai listening on http://{args.host}:{port} (base_url http://{args.host}:{port}/v1)",
        flush=True,
    )
    if args.ready_file:
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.ready_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.parent_pid:
        asyncio.ensure_future(_watch_parent(args.parent_pid, stop))
    await stop.wait()
    await runner.cleanup()


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(1)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            stop.set()
            return
        except PermissionError:
            continue


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aioice/aiortc are chatty at INFO about every candidate pair.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
