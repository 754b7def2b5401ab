"""``python -m fakes.stripe --port 12111``: run the fake until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from .app import Settings, make_app
from .webhooks import DeliveryConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m fakes.stripe", description="Offline fake of the Stripe API.")
    p.add_argument("--port", type=int, default=12111, help="0 picks a free port (printed on stdout)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--secret-key", default="sk_test_fake", help="the only API key accepted")
    p.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="deliver every event to URL (repeatable)",
    )
    p.add_argument("--webhook-secret", default="whsec_fake", help="signing secret for --webhook URLs")
    p.add_argument(
        "--public-url",
        help="base URL of the hosted checkout page when it differs from the address clients use for the API",
    )
    p.add_argument(
        "--async-delay", type=float, default=3.0, help="seconds before a 'pay later' payment settles"
    )
    p.add_argument(
        "--tax-rate-bps",
        type=int,
        default=0,
        help="the tax rate automatic tax applies, in basis points (825 = 8.25%%); POST /_fake/config changes it",
    )
    p.add_argument("--retry-base", type=float, default=2.0, help="first webhook retry delay in seconds")
    p.add_argument("--retry-factor", type=float, default=2.0, help="backoff multiplier between retries")
    p.add_argument("--max-attempts", type=int, default=6, help="webhook attempts before giving up")
    p.add_argument("--delivery-timeout", type=float, default=10.0, help="seconds to wait for a webhook reply")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    settings = Settings(
        secret_key=args.secret_key,
        webhook_secret=args.webhook_secret,
        webhooks=list(args.webhook),
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        async_delay=args.async_delay,
        tax_rate_bps=args.tax_rate_bps,
        delivery=DeliveryConfig(
            retry_base=args.retry_base,
            retry_factor=args.retry_factor,
            max_attempts=args.max_attempts,
            timeout=args.delivery_timeout,
        ),
    )
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    # The pytest plugin starts us with --port 0 and reads this line to learn the port.
    print(f"fake stripe listening on http://{args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
