"""The call supervisor (issue 6): one asyncio process watching many calls over their sidebands.

- `conf` — its settings (lease, grace, intervals), read once per supervisor.
- `store` — every database read and write it makes (sync; run in a small thread pool).
- `runner` — the asyncio `Supervisor` and one `CallWatcher` task per claimed call.
- `tasks` — the Celery sweep that frees leases of dead supervisors.

See docs/supervisor.md.
"""
