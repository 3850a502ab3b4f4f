"""What the desk shows: a heatmap a person can see, every control on screen at 1024x768, 1280x720
and 200% zoom, an end screen that says what is left where, counts after every decision."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage
from PIL import ImageChops, ImageStat
from sqlalchemy import select

from tests.browser.test_review_desk import log_in, press_and_wait, wait_ready, wait_saved
from tests.factories import make_active_version, make_scored_image
from tests.helpers import make_user
from tests.processes import wait_until
from webapp.extensions import db
from webapp.models import Job

pytestmark = pytest.mark.browser

SCREENSHOTS = Path("/tmp/desk-screenshots")  # looked at by hand; never compared to a stored file

# Every control of the desk that is on screen must lie wholly inside the window and inside every
# ancestor that clips (overflow other than visible), unless that ancestor scrolls to it; labels
# and buttons must not cut their own text.
CLIPPED = """() => {
  const out = [];
  const vw = document.documentElement.clientWidth, vh = document.documentElement.clientHeight;
  const pageScrolls = document.documentElement.scrollHeight > vh &&
    getComputedStyle(document.body).overflowY !== 'hidden';
  const controls = document.querySelectorAll([
    '#desk button', '#desk input', '#desk select', '#desk dt', '#desk .bucket-tag',
    '.topbar a', '.topbar button'].join(', '));
  for (const node of controls) {
    const r = node.getBoundingClientRect();
    if (!r.width || !r.height || node.closest('[hidden]')) continue;
    const name = (node.id || node.textContent || node.name || node.tagName).trim().slice(0, 40);
    if (r.left < -1 || r.right > vw + 1) out.push(`${name}: outside the window's width`);
    const scrolls = (up) => /auto|scroll/.test(getComputedStyle(up).overflowY) &&
      up.scrollHeight > up.clientHeight;
    let scroller = node.parentElement;  // a panel that scrolls to it is no clipping
    while (scroller && !scrolls(scroller)) scroller = scroller.parentElement;
    if (!pageScrolls && !scroller && (r.top < -1 || r.bottom > vh + 1))
      out.push(`${name}: below the window`);
    if (node.scrollWidth > node.clientWidth + 1 && node.tagName !== 'SELECT' &&
        node.tagName !== 'INPUT') out.push(`${name}: text cut`);
    for (let up = node.parentElement; up && up !== document.body; up = up.parentElement) {
      const style = getComputedStyle(up);
      if (style.overflowX === 'visible' && style.overflowY === 'visible') continue;
      const box = up.getBoundingClientRect();
      const scrollsY = /auto|scroll/.test(style.overflowY) && up.scrollHeight > up.clientHeight;
      const scrollsX = /auto|scroll/.test(style.overflowX) && up.scrollWidth > up.clientWidth;
      if (!scrollsX && (r.left < box.left - 1 || r.right > box.right + 1))
        out.push(`${name}: cut by ${up.className || up.tagName}`);
      if (!scrollsY && (r.top < box.top - 1 || r.bottom > box.bottom + 1))
        out.push(`${name}: cut by ${up.className || up.tagName}`);
    }
  }
  return out;
}"""


@pytest.mark.parametrize(
    "width, height, scale",
    [(1024, 768, 1), (1280, 720, 1), (640, 360, 2)],  # the last: 1280x720 at 200% zoom
    ids=["1024x768", "1280x720", "1280x720-zoom200"],
)
def test_every_control_is_on_screen(app, server, browser, queue_of, width, height, scale):
    queue_of(3)
    with app.app_context():
        make_user("boss", role="admin")  # the admin's menu is the longest
    context = browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=scale
    )
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        log_in_as_admin(page, server)
        wait_ready(page)
        page.keyboard.press("h")  # the legend and its slider must fit too
        page.wait_for_selector("#toast:not([hidden])")  # (no checkpoint: it says so)
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS / f"desk-{width}x{height}@{scale}.png"), full_page=True
        )
        assert page.evaluate(CLIPPED) == []
    finally:
        context.close()


def log_in_as_admin(page, base_url: str, open_desk: bool = True) -> None:
    """Log in as the admin "boss" (made beforehand), then open the desk (not their landing page)."""
    from tests.helpers import PASSWORD

    page.goto(f"{base_url}/auth/login")
    page.fill("input[name=username]", "boss")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if open_desk:
        page.goto(f"{base_url}/review/")
        page.wait_for_selector('#desk[data-state="item"]')


def test_the_heatmap_is_computed_by_a_job_and_changes_the_picture(app, server, new_page):
    with app.app_context():
        version = make_active_version()
        version_id = version.id
        image_id = make_scored_image(version, 0.5, label="unknown", size=(96, 80)).id
    page = new_page()
    log_in(page, server, app, "rita")
    wait_ready(page)
    before = page.locator("#stage").screenshot()
    page.keyboard.press("h")
    page.wait_for_selector('#desk[data-heat="computing"]', state="attached")
    assert page.is_visible("#heat-state.busy")  # a spinner while the worker computes it
    with app.app_context():
        # The page shows its spinner as it sends the request: the job row may follow a moment later.
        def heatmap_job():
            db.session.rollback()  # a fresh snapshot at each look
            return db.session.scalar(select(Job).where(Job.kind == "heatmap"))

        job = wait_until(heatmap_job, timeout=30, what="the heatmap job")
        assert job.params == {"image_id": image_id, "model_version_id": version_id}
        from webapp.jobs.core import execute

        execute(job.id)  # what the job worker does with it
    page.wait_for_selector('#desk[data-heat="shown"]', state="attached", timeout=60_000)
    assert page.is_visible("#heat-legend") and page.is_visible("#heat-opacity")
    shown = page.locator("#stage").screenshot()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "heatmap.png"))
    page.fill("#heat-opacity", "100")
    opaque = page.locator("#stage").screenshot()
    change, full_change = mean_change(before, shown), mean_change(before, opaque)
    assert change > 20  # of 255, averaged over the image: plainly visible
    assert full_change > change  # the slider works


def mean_change(first: bytes, second: bytes) -> float:
    """Mean absolute difference of two screenshots, over pixels and channels (0-255)."""
    with PILImage.open(io.BytesIO(first)) as a, PILImage.open(io.BytesIO(second)) as b:
        difference = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
        return sum(ImageStat.Stat(difference).mean) / 3


def test_the_end_screen_says_what_is_left_where(app, server, new_page, queue_of):
    order = queue_of(2)  # uncertain
    with app.app_context():
        from webapp.models import ModelVersion
        from webapp.services.review import leases

        version = db.session.scalar(select(ModelVersion))
        make_scored_image(version, 0.9, label="real")  # misclassified
        leases.claim_image(make_user("bob").id, order[0])  # another reviewer holds one
    page = new_page()
    log_in(page, server, app, "rita")
    page.select_option("select[name=bucket]", "uncertain")
    page.wait_for_selector(f'#desk[data-image-id="{order[1]}"]', state="attached")
    wait_ready(page)
    page.keyboard.press("s")  # skipped: it comes back after the rest (there is no rest)
    page.wait_for_selector('#recent li[data-status="saved"]')
    page.wait_for_selector(f'#desk[data-ready="{order[1]}"]', state="attached")
    page.keyboard.press("s")  # skipped twice: left to the others
    page.wait_for_selector('#desk[data-state="empty"]', state="attached")
    page.wait_for_selector("#end:not([hidden]) .end-options li")
    wait_saved(page)
    page.wait_for_selector("#end :text('Misclassified: 1 open item')")
    text = page.inner_text("#end")
    assert "1 item held by other reviewers" in text
    assert "1 item you skipped twice" in text
    page.click("text=Review Misclassified")
    wait_ready(page)
    assert page.input_value("select[name=bucket]") == "misclassified"


def test_counts_refresh_after_every_decision(app, server, new_page, queue_of):
    queue_of(4)
    page = new_page()
    log_in(page, server, app, "rita")
    page.wait_for_selector('#count-total:text-is("4")')
    press_and_wait(page, "r")
    page.wait_for_selector('#count-total:text-is("3")')
    press_and_wait(page, "f")
    page.wait_for_selector('#count-total:text-is("2")')
    assert page.inner_text("#stat-today") == "2"
