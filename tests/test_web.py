"""``kx serve`` at the HTTP level (CONTRACT section 10): the token, the cookie, CSRF, the Host header, the files it
serves, --read-only, refusals as 409, escaping, and the pages' content; in process, through Starlette's client."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import anyio
import pytest
from starlette.testclient import TestClient

from tests.conftest import complete, write
from tests.html_tags import Tags
from tests.test_anchor import copied_project
from web.app import create_app, event_stream
from web.site import Site

TOKEN = "s3cret-token"
BASE = "http://127.0.0.1:8765"


def events(project: Path) -> list[tuple[str, dict]]:
    with sqlite3.connect(project / ".kx" / "ledger.db") as conn:
        return [(kind, json.loads(data)) for kind, data in conn.execute("SELECT type, data FROM events ORDER BY position")]


def site_of(project: Path, **options) -> Site:
    return Site(project / ".kx" / "ledger.db", "plan", TOKEN, **options)


def client(project: Path, *, signed_in: bool = True, **options) -> TestClient:
    browser = TestClient(create_app(site_of(project, **options)), base_url=BASE, follow_redirects=False)
    if signed_in:
        assert browser.get(f"/?token={TOKEN}").status_code == 303
    return browser


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page)[1]


@pytest.fixture
def batch_one_done(kx, small_plan, project):
    """The small plan with PART-1 and PART-2 done by a runner's attempt each: batch 1 awaits review."""
    assert kx("plan", "import", "plan.md").code == 0
    for part in ("PART-1", "PART-2"):
        assert kx("start", part).code == 0
        assert complete(kx, project, part, attempt=f"{part}#1").code == 0
    assert kx("--json", "status").json["batches"][0]["state"] == "awaiting_review"
    return project


# --- the token ---------------------------------------------------------------------------


def test_every_route_is_401_without_the_token(batch_one_done):
    browser = client(batch_one_done, signed_in=False)
    for path in ("/", "/parts/PART-1", "/batches/1/review", "/api/status", "/api/stream", "/files/topics/00-alpha.md",
                 "/static/live.js", "/no/such/route", f"/?token={TOKEN}x"):
        response = browser.get(path)
        assert response.status_code == 401, path
        assert "token" in response.text and TOKEN not in response.text
    assert browser.post("/batches/1/review", data={"decision": "approve"}).status_code == 401
    assert browser.get("/", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401


def test_the_token_link_sets_a_strict_http_only_cookie_and_leaves_the_address(batch_one_done):
    browser = client(batch_one_done, signed_in=False)
    response = browser.get(f"/parts/PART-1?token={TOKEN}&view=all")
    assert response.status_code == 303 and response.headers["location"] == "/parts/PART-1?view=all"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"kx-token-8765={TOKEN};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert browser.get("/parts/PART-1").status_code == 200  # the cookie alone now
    script = TestClient(browser.app, base_url=BASE)
    assert script.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_every_response_carries_the_security_headers(batch_one_done):
    browser = client(batch_one_done)
    for response in (browser.get("/"), browser.get("/parts/PART-99"), client(batch_one_done, signed_in=False).get("/")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_host_header_other_than_the_bound_host_or_loopback_is_refused(batch_one_done):
    browser = client(batch_one_done)
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "192.168.1.20:8765"):
        assert browser.get("/api/status", headers={"Host": host}).status_code == 400, host
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST"):
        assert browser.get("/api/status", headers={"Host": host}).status_code == 200, host
    served_elsewhere = client(batch_one_done, signed_in=False, host="kx.lan")
    assert served_elsewhere.get(f"/?token={TOKEN}", headers={"Host": "kx.lan:8765"}).status_code == 303


# --- forms -------------------------------------------------------------------------------


def test_a_form_without_its_csrf_value_is_403_and_records_nothing(batch_one_done):
    browser = client(batch_one_done)
    before = events(batch_one_done)
    for form in ({"decision": "approve"}, {"decision": "approve", "csrf": "0" * 64}, {"decision": "approve", "csrf": ""}):
        response = browser.post("/batches/1/review", data=form)
        assert response.status_code == 403 and "csrf" in response.text
    assert browser.post("/parts/PART-1/reopen", data={"reason": "again"}).status_code == 403
    assert events(batch_one_done) == before


def test_the_review_form_records_what_kx_review_records(batch_one_done, kx):
    twin = batch_one_done / "twin" / ".kx" / "ledger.db"
    twin.parent.mkdir(parents=True)
    with sqlite3.connect(batch_one_done / ".kx" / "ledger.db") as source, sqlite3.connect(twin) as copy:
        source.backup(copy)
    browser = client(batch_one_done)
    page = browser.get("/batches/1/review").text
    assert 'name="decision" value="approve"' in page and 'href="/files/topics/00-alpha.md"' in page
    response = browser.post("/batches/1/review", data={"decision": "approve", "note": "drops read", "by": "Zoë",
                                                       "csrf": csrf_of(page)})
    assert response.status_code == 303 and response.headers["location"] == "/batches/1/review"
    assert "Zo%C3%AB" in response.headers["set-cookie"] and "HttpOnly" in response.headers["set-cookie"]
    assert kx("--ledger", str(twin), "review", "1", "--approve", "--note", "drops read", "--by", "Zoë").code == 0
    web, cli = events(batch_one_done)[-1], events(twin.parent.parent)[-1]
    assert web == cli and web[0] == "BatchReviewed" and sorted(web[1]["drops"]) == ["drops/PART-1.md", "drops/PART-2.md"]
    assert kx("--json", "status").json["batches"][1]["state"] == "open"


def test_a_rejection_sends_the_chosen_parts_back_and_the_name_is_remembered(batch_one_done, kx):
    browser = client(batch_one_done)
    csrf = csrf_of(browser.get("/batches/1/review").text)
    response = browser.post("/batches/1/review", data={"decision": "reject", "parts": ["PART-2"], "note": "too thin",
                                                       "by": "erin", "csrf": csrf})
    assert response.status_code == 303
    kind, data = events(batch_one_done)[-1]
    assert kind == "BatchReviewed" and data["parts"] == ["PART-2"] and data["note"] == "too thin"
    states = {p["id"]: p["state"] for p in kx("--json", "status").json["batches"][0]["parts"]}
    assert states == {"PART-1": "succeeded", "PART-2": "pending"}
    assert complete(kx, batch_one_done, "PART-2").code == 0
    assert 'name="by" value="erin"' in browser.get("/batches/1/review").text


def test_a_refusal_by_the_rules_is_409_on_the_page_and_records_nothing(batch_one_done):
    browser = client(batch_one_done)
    csrf = csrf_of(browser.get("/batches/1/review").text)
    before = events(batch_one_done)
    response = browser.post("/batches/2/review", data={"decision": "approve", "csrf": csrf})
    assert response.status_code == 409
    assert "batch 2 is locked, not awaiting review" in response.text and "<h1>Review of batch 2" in response.text
    response = browser.post("/parts/PART-3/reopen", data={"reason": "again", "csrf": csrf})
    assert response.status_code == 409 and "PART-3 is pending" in response.text
    assert events(batch_one_done) == before


def test_bad_form_input_is_400_and_records_nothing(batch_one_done):
    browser = client(batch_one_done)
    csrf = csrf_of(browser.get("/batches/1/review").text)
    before = events(batch_one_done)
    rows = [
        ("/batches/1/review", {"decision": "maybe"}, 400, "decision must be"),
        ("/batches/1/review", {"decision": "approve", "note": "n" * 4097}, 400, "note is longer than 4096 bytes"),
        ("/batches/1/review", {"decision": "approve", "parts": ["PART-1"]}, 400, "named only with a rejection"),
        ("/batches/1/review", {"decision": "reject", "parts": ["PART-3"]}, 404, "PART-3 is not in this batch"),
        ("/batches/9/review", {"decision": "approve"}, 404, "no batch 9"),
        ("/parts/PART-1/reopen", {"reason": " "}, 400, "say why"),
        ("/parts/PART-1/reopen", {"reason": "r" * 5000}, 400, "reason is longer than 4096 bytes"),
    ]
    for path, form, status, message in rows:
        response = browser.post(path, data={**form, "csrf": csrf})
        assert response.status_code == status and message in response.text, (path, form, response.text[-600:])
    huge = browser.post("/batches/1/review", content=b"note=" + b"x" * 70_000,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert huge.status_code == 413
    assert events(batch_one_done) == before


def test_reopen_from_the_part_page(batch_one_done):
    browser = client(batch_one_done)
    page = browser.get("/parts/PART-1").text
    response = browser.post("/parts/PART-1/reopen", data={"reason": "no sources", "by": "ann", "csrf": csrf_of(page)})
    assert response.status_code == 303 and response.headers["location"] == "/parts/PART-1"
    kind, data = events(batch_one_done)[-1]
    assert (kind, data["part"], data["reason"], data["by"]) == ("PartReopened", "PART-1", "no sources", "ann")


def test_read_only_has_no_forms_and_refuses_every_post(batch_one_done):
    browser = client(batch_one_done, read_only=True)
    page = browser.get("/batches/1/review").text
    assert "<form" not in page and "<form" not in browser.get("/parts/PART-1").text
    csrf = site_of(batch_one_done).csrf
    before = events(batch_one_done)
    for path in ("/batches/1/review", "/parts/PART-1/reopen", "/"):
        assert browser.post(path, data={"decision": "approve", "reason": "x", "csrf": csrf}).status_code == 403
    assert events(batch_one_done) == before


# --- files -------------------------------------------------------------------------------


def test_only_recorded_targets_and_drops_are_served(batch_one_done):
    browser = client(batch_one_done)
    target = browser.get("/files/topics/00-alpha.md")
    assert target.status_code == 200 and target.text.startswith("# Alpha Topic")
    assert target.headers["content-type"] == "text/plain; charset=utf-8"
    assert browser.get("/files/drops/PART-1.md").text == "drop of PART-1\n"
    for path in ("/files/../.kx/ledger.db", "/files/%2e%2e/.kx/ledger.db", "/files/..%2f.kx%2fledger.db",
                 "/files/%2E%2E%2F.kx%2Fledger.db", "/files/.kx/ledger.db", "/files/plan.md",
                 "/files/influences/00-alpha.md", "/files//etc/passwd", "/files/%2fetc%2fpasswd",
                 "/files/topics/%2e%2e/topics/00-alpha.md", "/files/topics/%2e/00-alpha.md", "/files/topics/02-gamma.md"):
        assert browser.get(path).status_code == 404, path


def test_a_recorded_file_swapped_for_a_link_out_of_the_root_is_not_served(batch_one_done):
    outside = batch_one_done.parent / f"{batch_one_done.name}-secret.txt"
    outside.write_text("secret\n")
    drop = batch_one_done / "drops" / "PART-1.md"
    drop.unlink()
    drop.symlink_to(outside)
    browser = client(batch_one_done)
    assert browser.get("/files/drops/PART-1.md").status_code == 404
    assert "secret" not in browser.get("/parts/PART-1").text


# --- what the pages show ---------------------------------------------------------------


XSS_PLAN = """\
# <script>alert(1)</script> plan

# BATCH 1: <img src=x onerror=alert(2)>

## PART 1: <b onmouseover=alert(3)>bold</b>

- [ ] PART 1: Create topics/x.md

**Step 1: Write**
- [ ] Section 1: <script>alert(4)</script>
- [ ] Search: "<iframe src=javascript:alert(5)>"
- [ ] Create KNOWLEDGE-DROP-x-2025-11-14-[TIME].md
"""


def test_plan_text_knowledge_files_and_drops_are_shown_as_text(kx, project):
    write(project, "plan.md", XSS_PLAN)
    assert kx("plan", "import", "plan.md").code == 0
    write(project, "topics/x.md", "# x\n\n## Section 1: <script>alert(6)</script>\n\n<script>alert(7)</script>\n"
                                  "[link](javascript:alert(8))\n")
    write(project, "drops/x.md", "<iframe src=javascript:alert(9)></iframe>\n")
    assert kx("drop", "PART-1", "drops/x.md", "--attempt", "PART-1#1").code == 3  # no attempt: a person's drop
    assert kx("drop", "PART-1", "drops/x.md").code == 0
    write(project, ".kx/config.toml", '[defaults]\nsources = "any"\n')  # a plan that takes any text as a source
    assert kx("tick", "PART-1", "2", "--source", "javascript:alert(10)", "--source", "https://example.org/a").code == 0
    browser = client(project)
    for path in ("/", "/parts/PART-1", "/batches/1/review"):
        parsed = Tags(browser.get(path).text)
        assert parsed.having("script") == [{"src": "/static/live.js", "defer": None}], path
        assert parsed.having("iframe") == parsed.having("img") == [] and parsed.handlers == [], path
        assert all(a.get("href", "/").startswith(("/", "#", "https://")) for a in parsed.having("a")), path
    part = browser.get("/parts/PART-1").text
    assert "&lt;script&gt;alert(7)&lt;/script&gt;" in part and "&lt;iframe src=javascript:alert(9)&gt;" in part
    assert '<a href="https://example.org/a"' in part and "<li>javascript:alert(10)</li>" in part
    assert "&lt;script&gt;alert(1)&lt;/script&gt; plan" in browser.get("/").text


def test_the_part_page_shows_what_kx_checked_and_the_matched_headings(batch_one_done, kx):
    page = client(batch_one_done).get("/parts/PART-1").text
    sha = kx("--json", "brief", "PART-1").json["boxes"][0]["evidence"]["sha256"]
    assert f'title="{sha}"' in page  # the Read box's file hash
    for line, ref, title in ((3, "1.1", "Section 1: Alpha overview"), (7, "1.2", "Section 2: Alpha details"),
                             (11, "1.3", "Section 2a: nested detail")):
        assert f'<h2 id="h-{line}" class="matched" data-box="{ref}">{title}</h2>' in page
        assert f'heading <q>{title}</q> at <a href="#h-{line}">line {line}</a>' in page
    assert 'href="/files/topics/00-alpha.md"' in page and 'href="/files/drops/PART-1.md"' in page


def test_an_attempt_keeps_a_copy_of_its_target_and_the_page_shows_what_the_next_changed(kx, small_plan, project):
    from machine.acts.workspace import Workspace
    from runners.local.wrapper import record_outcome

    assert kx("plan", "import", "plan.md").code == 0
    folder = project / ".kx" / "attempts" / "plan"
    for number, words in ((1, "first words"), (2, "second words")):
        assert kx("start", "PART-1").code == 0
        target = write(project, "topics/00-alpha.md", f"# Alpha\n\n{words}\n")
        (folder / f"PART-1-{number}").mkdir(parents=True, exist_ok=True)
        assert record_outcome(Workspace.open(), "PART-1", f"PART-1#{number}", 2,
                              folder / f"PART-1-{number}" / "runner.log") == 1
        assert (folder / f"PART-1-{number}" / "target").read_text() == target.read_text()
        assert kx("retry", "PART-1").code == 0
    page = client(project).get("/parts/PART-1").text
    assert "PART-1#1 → PART-1#2" in page
    assert '<span class="removed">-first words</span>\n<span class="added">+second words</span>' in page
    assert page.count("runner exited with status 2") == 2


def test_the_status_api_is_the_object_kx_json_status_prints(batch_one_done, kx):
    assert client(batch_one_done).get("/api/status").json() == kx("--json", "status").json


def test_the_status_api_and_the_dashboard_report_a_copied_ledger_as_kx_status_does(kx, small_plan, project,
                                                                                    monkeypatch):
    elsewhere = copied_project(kx, project)
    monkeypatch.chdir(elsewhere)
    status = kx("--json", "status").json
    assert [f["code"] for f in status["findings"]][:1] == ["ledger_moved"]
    browser = client(elsewhere)
    assert browser.get("/api/status").json() == status
    assert f"made in {project.resolve()}" in browser.get("/").text


def test_the_stream_sends_one_data_line_of_event_json_per_event(batch_one_done, kx):
    site = site_of(batch_one_done)
    head = site.head()
    assert kx("tick", "PART-1", "1").code == 0  # ticked already: nothing recorded
    assert kx("untick", "PART-1", "1").code == 0 and kx("tick", "PART-1", "1").code == 0

    async def first(count: int) -> list[str]:
        stream = event_stream(site, head)
        return [await anext(stream) for _ in range(count)]

    retry, *messages = anyio.run(first, 3)
    assert retry == "retry: 1000\n\n"
    sent = [json.loads(m.split("\ndata: ", 1)[1]) for m in messages]
    assert [m.count("\ndata: ") for m in messages] == [1, 1]
    assert [(e["type"], e["position"], e["stream"]) for e in sent] == [
        ("CheckboxUnticked", head + 1, "part:plan:PART-1"), ("CheckboxTicked", head + 2, "part:plan:PART-1")]
    assert sent[1]["data"]["box"] == sent[0]["data"]["box"]


def test_the_dashboard_shows_batches_failures_and_imported_work(kx, seed_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    assert kx("reopen", "PART-1", "--reason", "no evidence").code == 0
    assert kx("start", "PART-1").code == 0 and kx("fail", "PART-1", "--reason", "model timed out").code == 0
    page = client(project).get("/").text
    assert page.count("<progress") == 2 * len(kx("--json", "status").json["batches"])
    assert '<a href="/parts/PART-1">PART-1</a></td><td><span class="state failed">failed</span></td>' in page
    assert "model timed out" in page
    assert "PARTs succeeded by import, without evidence kx checked" in page and '<a href="/parts/PART-9">' in page


def test_a_waiting_run_finds_the_review_page_of_a_live_server_only(project):
    import os

    from runners.supervisor.review_page import announce, review_page, serve_file, withdraw

    ledger = project / ".kx" / "ledger.db"
    ledger.parent.mkdir()
    assert review_page(ledger, "plan", 2) is None
    noted = announce(ledger, "plan", "127.0.0.1", 8765)
    assert review_page(ledger, "plan", 2) == "http://127.0.0.1:8765/batches/2/review"
    assert review_page(ledger, "other", 2) is None
    announce(ledger, "plan", "::1", 9000)
    assert review_page(ledger, "plan", 1) == "http://[::1]:9000/batches/1/review"
    withdraw(noted)
    assert not noted.exists()
    gone = {"pid": os.getpid(), "started": 0, "host": "127.0.0.1", "port": 8765, "plan": "plan"}  # a reused pid
    serve_file(ledger, "plan").write_text(json.dumps(gone))
    assert review_page(ledger, "plan", 2) is None
    gone["pid"] = os.getpid() + 1
    serve_file(ledger, "plan").write_text(json.dumps(gone))
    withdraw(serve_file(ledger, "plan"))
    assert serve_file(ledger, "plan").exists()  # another process's note is not this one's to remove


def test_the_dashboard_follows_every_event_after_the_first_view(kx, small_plan, project):
    assert kx("plan", "import", "plan.md").code == 0
    browser = client(project)

    def chip(part: str) -> str:
        return re.search(rf'id="chip-{part}">{part} <span class="count">([0-9/]+)</span>', browser.get("/").text)[1]

    assert chip("PART-1") == "0/5"
    assert kx("tick", "PART-1", "1", "2").code == 0
    assert chip("PART-1") == "2/5"
    assert kx("untick", "PART-1", "2").code == 0
    assert chip("PART-1") == "1/5"
    small_plan.write_text(small_plan.read_text() + "\n## PART 5: Epsilon\n\n- [ ] PART 5: Create topics/04.md\n"
                          "- [ ] Section 1: Epsilon overview\n")
    assert kx("plan", "import", "plan.md").code == 0  # a revision: a PART more
    assert chip("PART-5") == "0/1" and chip("PART-1") == "1/5"
