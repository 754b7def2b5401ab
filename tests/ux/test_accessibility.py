"""Every user and staff page in Chromium at 1280 and 390 px: axe-core (vendored, injected by
Playwright) finds no serious or critical violation, and each page is saved as a PNG for review
(`make screenshots` keeps them in var/screenshots/; otherwise they go to the test's tmp dir)."""

import os
from pathlib import Path

import pytest

from tests.factories import DEFAULT_PASSWORD
from tests.ux.site import WIDTHS, axe_violations, build_site, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def site_server(transactional_db, fake_openai, fake_stripe, tmp_path):
    from tests.live import start_daphne

    site = build_site()
    server = start_daphne(
        tmp_path, OPENAI_BASE_URL=fake_openai.base_url, OPENAI_API_KEY=fake_openai.project_key,
        STRIPE_SECRET_KEY=fake_stripe.secret_key, STRIPE_WEBHOOK_SECRET=fake_stripe.webhook_secret,
        STRIPE_API_BASE=fake_stripe.api_base,
    )
    server.site = site
    yield server
    server.stop()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_no_serious_accessibility_violation_on_any_page(site_server, open_browser, width, tmp_path):
    site = site_server.site
    shots = Path(os.environ.get("UX_SCREENSHOTS_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[dict]] = {}
    statuses: dict[str, int] = {}
    hang_up_right_edge = 0.0
    with open_browser() as page:
        w, h = WIDTHS[width]
        page.set_viewport_size({"width": w, "height": h})
        for who in ("anonymous", "user", "staff"):
            page.context.clear_cookies()
            if who != "anonymous":
                sign_in(page, site_server.url, site.user_email if who == "user" else site.staff_email, DEFAULT_PASSWORD)
            for entry in (p for p in site.pages if p.who == who):
                response = page.goto(site_server.url + entry.path)
                statuses[entry.name] = response.status if response else 0
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(shots / f"{entry.name}-{w}.png"), full_page=True)
                if entry.name == "staff-live-calls":
                    box = page.get_by_test_id("hang-up").bounding_box()
                    hang_up_right_edge = box["x"] + box["width"] if box else float("inf")
                if violations := axe_violations(page):
                    found[f"{entry.name} ({entry.path})"] = violations

    # Every page answers itself (a 404 or 403 page would pass axe and hide the page it stands for).
    expected = {name: 404 if name == "not-found" else 200 for name in statuses}
    assert statuses == expected, site_server.log()[-5000:]
    if width == "desktop":  # "Hang up now" was clipped at 1280 px (issue 12); narrow screens scroll
        assert 0 < hang_up_right_edge <= w
    assert found == {}, "\n".join(
        f"{name}: {v['impact']} {v['id']} – {v['help']} @ {v['targets']}" for name, vs in found.items() for v in vs
    )
