"""`python manage.py supervise_calls`: run a call supervisor until SIGINT/SIGTERM.

Any number may run side by side (on one machine or many): each call is watched by the one that
holds its lease. See docs/supervisor.md.
"""

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime_saas import metrics
from sessions.supervisor.conf import SupervisorConf
from sessions.supervisor.runner import Supervisor


class Command(BaseCommand):
    help = "Watch live realtime calls over their sidebands: meter, enforce limits, settle."

    def add_arguments(self, parser):
        parser.add_argument("--owner", default=None, help="Lease owner name (default: host:pid:random).")
        parser.add_argument("--lease-seconds", type=float, default=None)
        parser.add_argument("--grace-seconds", type=float, default=None, help="Attach grace before fail-closed hangup.")
        parser.add_argument("--poll-seconds", type=float, default=None)
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="Serve GET /metrics on this port (default: SUPERVISOR_METRICS_PORT; 0: off).")

    def handle(self, *args, **options):
        overrides = {
            name: options[key]
            for name, key in (("lease_seconds", "lease_seconds"), ("attach_grace_seconds", "grace_seconds"),
                              ("poll_seconds", "poll_seconds"))
            if options[key] is not None
        }
        if "lease_seconds" in overrides:
            overrides.setdefault("renew_seconds", max(overrides["lease_seconds"] / 5, 0.2))
        supervisor = Supervisor(owner=options["owner"], conf=SupervisorConf.from_settings(**overrides))
        port = options["metrics_port"] if options["metrics_port"] is not None else settings.SUPERVISOR_METRICS_PORT
        if port:
            metrics.supervisor()  # its families exist (at zero) from the first scrape
            server = metrics.serve(port=port, host=settings.METRICS_LISTEN_HOST,
                                   registry=metrics.SUPERVISOR_REGISTRY, name="supervisor")
            self.stdout.write(f"supervisor metrics on http://{settings.METRICS_LISTEN_HOST}:{server.server_port}/metrics")
        self.stdout.write(f"supervisor {supervisor.owner} watching calls (Ctrl-C stops)")
        asyncio.run(self._run(supervisor))
        self.stdout.write(f"supervisor {supervisor.owner} stopped: {dict(supervisor.stats)}")

    async def _run(self, supervisor: Supervisor) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await supervisor.run(stop)
