"""``kx report``: one self-contained, escaped HTML page of a run, readable at 42 and at 1,000 PARTs,
and a headless Chromium that renders it without a console message."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, kx_run, three_batch_plan
from tests.html_tags import Tags
from tests.simulate import simulate

ARTIFACTS = REPO / "tests" / "artifacts"
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section", "h1", "h2",
                "p", "div", "span", "b", "i", "em", "code", "table", "thead", "tbody", "tr", "th", "td", "details",
                "summary", "svg", "g", "rect", "line", "path", "text", "tspan"}


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory) -> tuple[Path, dict]:
    """A real ``kx run`` of 9 PARTs in 3 batches, limit 2, PART-4 failing once; then ``kx --json report``."""
    folder = tmp_path_factory.mktemp("rehearsed")
    (folder / "plan.md").write_text(three_batch_plan())
    assert kx_run(folder, "plan", "import", "plan.md")[0] == 0
    code, _, err = kx_run(folder, "run", "--runner", "rehearse --fail PART-4", "--review", "auto", "--backoff", "0.1")
    assert code == 0, err
    code, out, err = kx_run(folder, "--json", "report")
    assert code == 0, err
    return folder, json.loads(out)


def report_of(kx, folder: Path, monkeypatch, *args: str) -> str:
    monkeypatch.chdir(folder)
    result = kx("--json", "report", "-o", "r.html", *args)
    assert result.code == 0, result.err
    return (folder / "r.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_report_of_a_run(rehearsed):
    folder, result = rehearsed
    path = folder / ".kx" / "report-plan.html"
    assert result == {"schema": 1, "output": ".kx/report-plan.html", "bytes": path.stat().st_size}
    html = path.read_text(encoding="utf-8")
    tags = Tags(html)
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS
    assert len(tags.having("svg", "timeline")) == 1
    assert len(tags.having("rect", "a")) == 10  # nine PARTs, PART-4 twice
    assert len(tags.having("rect", "bad")) == 1 and len(tags.having("rect", "ok")) == 9
    assert "#2</text>" in html or "PART-4#2 succeeded" in html
    assert [a["id"] for a in tags.having("tr") if "id" in a] == [f"PART-{n}" for n in range(1, 10)]
    assert len(tags.having("g", "gate")) == 3  # the three approvals, on the time axis
    assert ">limit 2</text>" in html and "2/2</b><span>peak running" in html and len(tags.having("path", "count")) == 1
    assert len(tags.having("div", "batch")) == 3 and html.count("3/3</span>") == 3
    assert "KNOWLEDGE-DROP-topic-4-2025-11-14-" in html and "topics/04.md" in html
    digest = kx_run(folder, "audit", "digest")[1].strip()
    assert f"ledger digest <code>{digest}</code>" in html  # the report's events, to check later with --digest


def test_the_page_loads_nothing_and_runs_nothing(rehearsed):
    html = (rehearsed[0] / ".kx" / "report-plan.html").read_text(encoding="utf-8")
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"(src|href)=", html) and "http://" not in html and "https://" not in html
    assert "Content-Security-Policy\" content=\"default-src 'none'" in html


def test_plan_text_is_escaped_and_42_parts_are_labelled(kx, tmp_path, monkeypatch):
    made = simulate(tmp_path, 42)
    html = report_of(kx, tmp_path, monkeypatch)
    tags = Tags(html)
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS  # no tag came in with the plan's text
    assert "<script>" not in html and "cites nothing &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Topic 7 &lt;b&gt;&amp;amp; friends&lt;/b&gt;" in html
    assert len(tags.having("text", "plabel")) == 42
    assert len(tags.having("rect", "a")) == len(made)
    assert len(tags.having("rect", "waslost")) == sum(a.lost for a in made) == 1
    assert len(html.encode()) < 100_000


def test_a_lost_attempt_finished_later_is_told_as_it_was(kx, tmp_path, monkeypatch):
    made = simulate(tmp_path, 42)
    lost = next(a for a in made if a.lost)
    html = report_of(kx, tmp_path, monkeypatch)
    assert f"{lost.attempt} lost, then succeeded" in html and "no heartbeat for 61s (lease 60s)" in html
    row = html[html.index(f'<tr id="{lost.part}">'):]
    row = row[: row.index("</tr>")]
    assert "failed/lost" not in row and "(1 lost, then succeeded)" in row


def test_1000_parts_collapse_to_batch_labels_and_stay_small(kx, tmp_path, monkeypatch):
    made = simulate(tmp_path, 1000, per_batch=20)
    started = time.perf_counter()
    html = report_of(kx, tmp_path, monkeypatch)
    took = time.perf_counter() - started
    tags = Tags(html)
    assert not tags.having("text", "plabel") and len(tags.having("text", "blabel")) == 50
    assert len(tags.having("rect", "a")) == len(made)
    assert len([a for a in tags.having("tr") if "id" in a]) == 1000
    assert len(tags.having("details")) == 50 and not [a for a in tags.having("details") if "open" in a]
    assert len(html.encode()) < 1_000_000
    assert took < 10


def test_a_plan_without_attempts_has_an_empty_timeline(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    result = kx("report")
    assert result.code == 0 and result.text.startswith(".kx/report-plan.html (")
    html = (project / ".kx" / "report-plan.html").read_text(encoding="utf-8")
    assert "no attempt recorded yet" in html and "<svg" not in html
    assert len(Tags(html).having("tr", None)) > 9


def test_report_errors_are_one_line(kx, small_plan, project):
    assert kx("report").code == 2  # no ledger yet
    assert kx("plan", "import", "plan.md").code == 0
    result = kx("report", "-o", "nowhere/r.html")
    assert result.code == 2 and result.err.startswith("kx: error: no folder nowhere") and "\n" == result.err[-1]
    assert result.err.count("\n") == 1


# --- in a browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


def chromium(page: Path, screenshot: Path) -> tuple[str, list[str]]:
    """The rendered DOM and the console messages of ``page``; a screenshot of it at 1400x2000."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom",
             f"--screenshot={screenshot}", "--window-size=1400,2000", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.slow
@needs_chromium
def test_chromium_renders_the_report_without_console_messages(rehearsed):
    ARTIFACTS.mkdir(exist_ok=True)
    page = ARTIFACTS / "report.html"
    shutil.copy(rehearsed[0] / ".kx" / "report-plan.html", page)
    screenshot = ARTIFACTS / "report.png"
    screenshot.unlink(missing_ok=True)
    dom, console = chromium(page, screenshot)
    assert console == []
    rows = Tags(dom).having("tr")
    assert [a["id"] for a in rows if "id" in a] == [f"PART-{n}" for n in range(1, 10)]
    assert len(Tags(dom).having("rect", "a")) == 10
    assert png_size(screenshot) == (1400, 2000) and screenshot.stat().st_size > 20_000


@pytest.mark.slow
@needs_chromium
def test_the_console_check_sees_an_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>console.error('boom'); missing();</script>")
    _, console = chromium(page, tmp_path / "broken.png")
    assert any("boom" in line for line in console) and any("missing is not defined" in line for line in console)
