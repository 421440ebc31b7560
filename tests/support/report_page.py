"""Checking an HTML report the way a reader sees it: in a real headless Chromium.

Shared by the CLI's report tests (a file on disk) and the end-to-end test (the page the
operator serves through its Service): it loads with no console errors, fetches nothing but
itself, draws every chart, and a screenshot is saved (``$REPORT_SCREENSHOT_DIR`` when set, to
look at it, else the test's tmp folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.chromium import chromium

# Every chart's canvas has this many non-background pixels at least once drawn.
MIN_INKED_PIXELS = 500

# Counts, per chart container, the canvas pixels that are not transparent or white.
INKED_PIXELS = """
Array.from(document.querySelectorAll('[data-chart]')).map(function (el) {
  var canvas = el.querySelector('canvas');
  if (!canvas) { return [el.dataset.chart, el.dataset.drawn || null, 0]; }
  var pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  var inked = 0;
  for (var i = 0; i < pixels.length; i += 4) {
    if (pixels[i + 3] > 0 && (pixels[i] < 240 || pixels[i + 1] < 240 || pixels[i + 2] < 240)) {
      inked += 1;
    }
  }
  return [el.dataset.chart, el.dataset.drawn || null, inked];
})
"""


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("REPORT_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_and_check(page: Path | str, tmp_path: Path, name: str) -> dict:
    """Open ``page`` (a file, or an http:// URL) in Chromium and check it; returns what the
    page reported."""
    url = page if isinstance(page, str) else page.resolve().as_uri()
    with chromium(tmp_path / f"profile-{name}") as browser:
        visit = browser.visit(url)
        assert visit.errors == []
        assert [u for u in visit.requests if u != url] == []  # nothing fetched: self-contained
        containers = browser.evaluate("document.querySelectorAll('[data-chart]').length")
        drawn = browser.evaluate("document.body.dataset.chartsDrawn || null")
        error = browser.evaluate("document.body.dataset.chartError || null")
        assert error is None
        assert drawn == str(containers)
        charts = browser.evaluate(INKED_PIXELS)
        assert all(flag == "1" for _, flag, _ in charts), charts
        blank = [chart for chart, _, inked in charts if inked < MIN_INKED_PIXELS]
        assert blank == [], f"charts with nothing drawn: {blank}"
        shot = browser.screenshot(screenshot_dir(tmp_path) / f"report-{name}.png")
    assert shot.stat().st_size > 50_000  # a page of charts and tables, not a blank image
    return {"charts": [chart for chart, _, _ in charts]}
