"""``kx serve`` in a real browser: Playwright driving the system's Chromium against a ``kx serve`` process.

Browsers cannot be downloaded here: the tests use Debian's ``chromium`` (``.ci/run`` installs it) and are
skipped, saying so, where none is installed.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import complete, events_of, kx_run, real_env, three_batch_plan, wait_until, write
from tests.test_web import XSS_PLAN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "browser-token"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (Debian's 'chromium'; .ci/run installs it)")]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


class Served:
    """A ``kx serve`` process on a free port, and what it said."""

    def __init__(self, project: Path, *args: str):
        self.process = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", "0", "--token", TOKEN,
                                         *args], cwd=project, env=real_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
        self.first_line = self.process.stdout.readline().decode().strip()
        assert self.first_line.endswith(f"/?token={TOKEN}"), self.process.stderr.read().decode()
        self.base = self.first_line.split("/?", 1)[0]
        self.port = int(self.base.rsplit(":", 1)[1])

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=30)


@pytest.fixture
def serve(project) -> Iterator:
    started: list[Served] = []

    def start(*args: str) -> Served:
        started.append(Served(project, *args))
        return started[-1]

    yield start
    for served in started:
        served.stop(signal.SIGKILL)


@pytest.fixture
def page(browser):
    """A fresh browser tab that records console errors and every dialog a script opened."""
    context = browser.new_context()
    tab = context.new_page()
    tab.errors, tab.dialogs = [], []
    tab.on("console", lambda message: tab.errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


def signed_in(page, served: Served, path: str = "/"):
    page.goto(served.first_line)  # the printed address: sets the cookie, then the token leaves the address
    assert page.url == f"{served.base}/"
    page.goto(served.base + path)
    return page


def part_states(kx) -> dict[str, str]:
    return {p["id"]: p["state"] for b in kx("--json", "status").json["batches"] for p in b["parts"]}


def test_the_dashboard_shows_a_tick_from_the_command_line_within_2s_without_reload(kx, small_plan, project, serve,
                                                                                     page):
    assert kx("plan", "import", "plan.md").code == 0
    served = serve()
    signed_in(page, served)
    page.wait_for_selector("html[data-live=connected]", timeout=10_000)
    page.evaluate("window.kxSamePage = 42")
    assert page.inner_text("#chip-PART-1 .count") == "0/5"
    assert kx_run(project, "tick", "PART-1", "1")[0] == 0
    ticked = time.monotonic()
    expect(page.locator("#chip-PART-1 .count")).to_have_text("1/5", timeout=2_000)
    assert time.monotonic() - ticked < 2.0
    assert page.evaluate("window.kxSamePage") == 42  # the same page: updated, not reloaded
    assert page.errors == []


def test_the_review_page_approves_and_a_waiting_run_goes_on(kx, project, serve, page):
    write(project, "plan.md", three_batch_plan(per_batch=1))
    assert kx("plan", "import", "plan.md").code == 0
    served = serve()
    log = (project / "run.err").open("wb")
    run = subprocess.Popen([sys.executable, "-m", "cli.main", "run", "--runner", "rehearse", "--review", "wait",
                            "--until-batch", "2"], cwd=project, env=real_env(), stdout=subprocess.DEVNULL,
                           stderr=log, start_new_session=True)
    try:
        wait_until(lambda: kx("--json", "status").json["batches"][0]["state"] == "awaiting_review", timeout=120)
        wait_until(lambda: "can be reviewed in a browser" in (project / "run.err").read_text(), timeout=30)
        assert run.poll() is None  # waiting at the gate
        signed_in(page, served, "/batches/1/review")
        page.fill("#approve textarea[name=note]", "drops read in the browser")
        page.fill("#approve input[name=by]", "Zoë")
        page.click("#approve button[type=submit]")
        page.wait_for_selector("#packet .state.approved", timeout=10_000)
        assert run.wait(timeout=180) == 0  # it went on through batch 2 and stopped at its gate
    finally:
        if run.poll() is None:
            run.kill()
        log.close()
    said = (project / "run.err").read_text()
    assert f"batch 1 can be reviewed in a browser: {served.base}/batches/1/review" in said and TOKEN not in said
    reviews = [e for e in events_of(kx) if e["type"] == "BatchReviewed"]
    assert [(r["data"]["batch"], r["data"]["decision"], r["data"]["by"], r["data"]["note"]) for r in reviews] == [
        (1, "approve", "Zoë", "drops read in the browser")]
    assert kx("--json", "status").json["batches"][1]["state"] == "awaiting_review"
    page.goto(served.base + "/batches/2/review")
    assert page.input_value("#approve input[name=by]") == "Zoë"  # the reviewer's name, remembered
    assert page.errors == []


def test_a_rejection_sends_the_chosen_parts_back(kx, small_plan, project, serve, page):
    assert kx("plan", "import", "plan.md").code == 0
    for part in ("PART-1", "PART-2"):
        assert kx("start", part).code == 0 and complete(kx, project, part, attempt=f"{part}#1").code == 0
    served = serve()
    signed_in(page, served, "/batches/1/review")
    page.check("#reject input[name=parts][value=PART-2]")
    page.fill("#reject textarea[name=note]", "too thin")
    page.click("#reject button[type=submit]")
    expect(page.locator("#packet")).to_contain_text("reject by", timeout=10_000)
    assert part_states(kx) == {"PART-1": "succeeded", "PART-2": "pending", "PART-3": "pending", "PART-4": "pending"}
    assert "too thin (sent back: PART-2)" in page.inner_text("#packet")
    assert page.errors == []


def test_a_part_page_shows_the_matched_headings(kx, small_plan, project, serve, page):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("start", "PART-1").code == 0 and complete(kx, project, "PART-1", attempt="PART-1#1").code == 0
    signed_in(page, serve(), "/parts/PART-1")
    marked = page.locator("article.knowledge .matched")
    assert marked.all_inner_texts() == ["Section 1: Alpha overview", "Section 2: Alpha details",
                                        "Section 2a: nested detail"]
    assert [marked.nth(n).get_attribute("data-box") for n in range(3)] == ["1.1", "1.2", "1.3"]
    page.click("text=line 7")
    assert page.url.endswith("#h-7")
    assert page.errors == []


def test_xss_strings_from_the_plan_stay_text(kx, project, serve, page):
    write(project, "plan.md", XSS_PLAN)
    assert kx("plan", "import", "plan.md").code == 0
    write(project, "topics/x.md", "# x\n\n<script>alert(7)</script>\n<img src=x onerror=alert(8)>\n")
    write(project, "drops/x.md", "<iframe src=javascript:alert(9)></iframe>\n")
    assert kx("drop", "PART-1", "drops/x.md").code == 0
    served = serve()
    signed_in(page, served)
    assert page.inner_text("h1") == "<script>alert(1)</script> plan"
    for path in ("/", "/parts/PART-1", "/batches/1/review", "/files/drops/x.md"):
        page.goto(served.base + path)
        assert page.evaluate("document.querySelectorAll('iframe, img').length") == 0, path
    page.goto(served.base + "/parts/PART-1")
    assert "<script>alert(7)</script>" in page.inner_text("article.knowledge")
    assert "<iframe src=javascript:alert(9)></iframe>" in page.inner_text("article.drop")
    assert page.dialogs == [] and page.errors == []


def test_the_server_process(kx, small_plan, project, serve):
    assert kx("plan", "import", "plan.md").code == 0
    served = serve("--read-only")
    noted = project / ".kx" / "serve-plan.json"
    assert json.loads(noted.read_text())["port"] == served.port and TOKEN not in noted.read_text()

    def raw(path: str, host: str = "127.0.0.1", method: str = "GET") -> int:
        connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
        connection.putrequest(method, path, skip_host=True)  # the path exactly as written, dots and all
        connection.putheader("Host", host)
        connection.putheader("Authorization", f"Bearer {TOKEN}")
        connection.endheaders()
        status = connection.getresponse().status
        connection.close()
        return status

    assert raw("/api/status") == 200
    for path in ("/files/../.kx/ledger.db", "/files/%2e%2e/.kx/ledger.db", "/files/..%2f.kx%2fledger.db",
                 "/files/topics/../../plan.md", "/files/../../etc/passwd"):
        assert raw(path) == 404, path
    assert raw("/api/status", host="attacker.example") == 400
    assert raw("/batches/1/review", method="POST") == 403
    assert served.stop(signal.SIGTERM) == 0
    assert not noted.exists()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=browser-token", served.first_line)
