"""Faults: a full disk during an append, a failing write of the plan file, secrets in logs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid

import pytest

from ledger.errors import BadInput
from tests.conftest import FROZEN_AT, SMALL_PLAN, event_count


def test_an_append_that_fails_midway_records_nothing(kx, small_plan, project, monkeypatch):
    from ledger.store import Ledger

    kx("plan", "import", "plan.md")
    before = event_count(project)
    real_insert = Ledger._insert_all

    def failing_insert(self, values):
        real_insert(self, values[:2])  # two rows in, then the disk fills up
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Ledger, "_insert_all", failing_insert)
    result = kx("tick", "PART-1", "1", "2", "3", "4")
    assert result.code == 1 and "nothing was recorded" in result.err and result.err.count("\n") == 1
    monkeypatch.setattr(Ledger, "_insert_all", real_insert)
    assert event_count(project) == before
    assert kx("audit", "verify").code == 0
    assert kx("--json", "tick", "PART-1", "1", "2", "3", "4").json["recorded"] == ["CheckboxTicked"] * 4


def test_the_plan_file_is_never_half_written(kx, small_plan, project, monkeypatch):
    kx("plan", "import", "plan.md")
    kx("tick", "PART-1", "1")
    original = small_plan.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    result = kx("render")
    assert result.code == 1 and result.err.startswith("kx: error: ")
    assert small_plan.read_bytes() == original
    assert sorted(p.name for p in project.iterdir() if p.is_file()) == ["plan.md"]


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def kx_proc(*args, cwd):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("KX_")}, "KX_NOW": FROZEN_AT}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=60)


def fill(folder):
    handle = open(folder / "filler", "wb", buffering=0)
    try:
        while True:
            handle.write(b"\0" * 4096)
    except OSError:
        pass
    finally:
        try:
            handle.close()
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_fails_cleanly_and_loses_nothing(tiny_disk):
    (tiny_disk / "plan.md").write_text(SMALL_PLAN)
    assert kx_proc("plan", "import", "plan.md", cwd=tiny_disk).returncode == 0
    assert kx_proc("tick", "PART-1", "1", cwd=tiny_disk).returncode == 0
    fill(tiny_disk)
    failures = 0
    for ref in ("2", "3", "4", "5"):
        result = kx_proc("tick", "PART-1", ref, cwd=tiny_disk)
        if result.returncode != 0:
            failures += 1
            err = result.stderr.decode()
            assert err.startswith("kx: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
            assert result.returncode == 1 and "nothing was recorded" in err, err
    render = kx_proc("render", cwd=tiny_disk)
    plan_text = (tiny_disk / "plan.md").read_text()
    assert plan_text == SMALL_PLAN or "- [x] Read influences/00-alpha.md" in plan_text  # old or new, never half
    assert not [p for p in tiny_disk.iterdir() if p.name.startswith(".plan.md.")]
    (tiny_disk / "filler").unlink()
    assert failures or render.returncode != 0  # the disk really was full for something
    verify = kx_proc("audit", "verify", cwd=tiny_disk)
    assert verify.returncode == 0, verify.stdout.decode()
    history = json.loads(kx_proc("--json", "audit", "history", "PART-1", cwd=tiny_disk).stdout)
    ticks = [e for e in history["events"] if e["type"] == "CheckboxTicked"]
    assert ticks[0]["data"]["box"] == 1 and len(ticks) == 1 + (4 - failures)
    assert kx_proc("tick", "PART-1", "2", "3", "4", "5", cwd=tiny_disk).returncode == 0


def test_log_lines_and_the_ledger_hold_no_secrets(kx, small_plan, project, monkeypatch):
    secret = "sk-live-" + uuid.uuid4().hex
    monkeypatch.setenv("MY_SERVICE_TOKEN", secret)
    kx("plan", "import", "plan.md")
    from ledger import logs

    logs.get().info("calling server", api_key=secret, headers={"Authorization": f"Bearer {secret}"},
                    note=f"failed with {secret}")
    from machine.acts.lifecycle import Act, fail, start
    from machine.acts.workspace import Workspace

    workspace = Workspace.open()
    start(workspace, "PART-1", Act(by="t"), runner=["agent", "--api-key", secret, f"--token={secret}"])
    fail(workspace, "PART-1", f"server said: bad key {secret}", Act(attempt="PART-1#1"), log_tail=f"key={secret}")
    for path in (project / ".kx").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    started = kx("--json", "audit", "history", "PART-1").json["events"][1]["data"]["runner"]
    assert started == ["agent", "--api-key", "[redacted]", "--token=[redacted]"]
    logged = [json.loads(line) for line in (project / ".kx" / "kx.log").read_text().splitlines()]
    line = next(l for l in logged if l.get("event") == "calling server")
    assert line["api_key"] == "[redacted]" and line["headers"]["Authorization"] == "[redacted]"


def test_the_variable_named_by_api_key_env_is_a_secret_too(kx, small_plan, project, monkeypatch):
    key = "llm-" + uuid.uuid4().hex
    monkeypatch.setenv("LLM_KEY", key)
    monkeypatch.setenv("KX_REDACT_ENV", "")  # restored after the test
    kx("plan", "import", "plan.md")
    from ledger import logs
    from machine.acts.lifecycle import Act, fail, start
    from machine.acts.workspace import Workspace
    from runners.spec import protect_runner_key, runner_command

    protect_runner_key(runner_command("openai --api-key-env LLM_KEY", model="m"))
    workspace = Workspace.open()
    start(workspace, "PART-1", Act(by="t"), runner=["agent"])
    fail(workspace, "PART-1", f"server said: {key}", Act(attempt="PART-1#1"), log_tail=f"header {key}")
    logs.get().info("calling server", note=f"failed with {key}")
    events = kx("--json", "audit", "history", "PART-1").json["events"]
    assert events[-1]["data"]["reason"] == "server said: [redacted]"
    assert events[-1]["data"]["log_tail"] == "header [redacted]"
    for path in (project / ".kx").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_redaction_patterns():
    from ledger.secrets import redact, redact_argv

    assert redact({"password": "hunter22", "nested": ["Bearer abcdefghijkl"]}) == {
        "password": "[redacted]", "nested": ["Bearer [redacted]"]}
    assert redact_argv(["x", "--secret=abc", "--model", "m"]) == ["x", "--secret=[redacted]", "--model", "m"]
    assert redact("ghp_" + "a" * 36) == "[redacted]"


SPEC_SECRETS = ["K1-short", "K2-short", "K3-short", "K4-short", "K5-short", "PASS-short", "TOK-short"]


def secret_laden_spec() -> str:
    k1, k2, k3, k4, k5, password, token = SPEC_SECRETS
    return (f"env DB_PASSWORD={k1} agent -k {k2} --bearer {k3} --hf-token={k4} --key {k5}"
            f" --repo https://{token}@git.example/x --api-key-env LLM_KEY --model m")


def test_redaction_of_runner_specs_and_urls():
    from ledger.secrets import redact, redact_argv, redact_command, redact_text

    assert redact_argv(["agent", "-k", "a", "--key", "b", "--bearer", "c", "--password=d", "--hf_token", "e",
                        "--client-secret=f", "MY_API_KEY=g", "--api-key-env", "LLM_KEY", "--keyword", "h"]) == [
        "agent", "-k", "[redacted]", "--key", "[redacted]", "--bearer", "[redacted]", "--password=[redacted]",
        "--hf_token", "[redacted]", "--client-secret=[redacted]", "MY_API_KEY=[redacted]", "--api-key-env",
        "LLM_KEY", "--keyword", "h"]
    assert redact_text("http://user:PASS@host:8080/v1") == "http://user:[redacted]@host:8080/v1"
    assert redact_text("clone https://tok@github.com/x and http://host/v1") == (
        "clone https://[redacted]@github.com/x and http://host/v1")
    assert redact_text("curl --token abc --user-agent x --password=hunter2 A_SECRET=s3 -k zz --max-tokens 9") == (
        "curl --token [redacted] --user-agent x --password=[redacted] A_SECRET=[redacted] -k [redacted]"
        " --max-tokens 9")
    assert redact_command("agent --key 'two words' --model m") == "agent --key '[redacted]' --model m"
    assert redact_command("agent 'unbalanced") == "agent 'unbalanced"
    assert redact({"command": ["agent", "-k", "zz"], "url": "http://u:p@h/"}) == {
        "command": ["agent", "-k", "[redacted]"], "url": "http://u:[redacted]@h/"}


def test_a_runner_spec_and_base_url_are_recorded_and_logged_redacted(kx, small_plan, project):
    kx("plan", "import", "plan.md")
    from ledger import logs
    from machine.acts.lifecycle import Act, record_run, start
    from machine.acts.workspace import Workspace
    from runners.spec import runner_command

    spec, base_url = secret_laden_spec(), "http://user:PASS-short@127.0.0.1:9/v1"
    workspace = Workspace.open()
    record_run(workspace, "run", {"runner": spec, "base_url": base_url, "retries": 0}, Act(by="kx run"))
    start(workspace, "PART-1", Act(by="t"), runner=runner_command(f"openai --base-url {base_url}", model="m"))
    start(workspace, "PART-2", Act(by="t"), runner=runner_command(spec))
    logs.get().info("run", runner=runner_command(spec), options={"base_url": base_url, "runner": spec})
    printed = [kx(*json_flag, "events").out for json_flag in ([], ["--json"])]
    printed += [kx(*json_flag, "audit", "history", part).out for part in ("PART-1", "PART-2")
                for json_flag in ([], ["--json"])]
    files = [path.read_bytes() for path in (project / ".kx").rglob("*") if path.is_file()]
    for secret in SPEC_SECRETS:
        assert not any(secret.encode() in text for text in printed + files), secret
    run = next(e for e in kx("--json", "audit", "history", "PART-1").json["events"] if e["type"] == "RunnerStarted")
    assert "http://user:[redacted]@127.0.0.1:9/v1" in run["data"]["runner"]
    assert "LLM_KEY" in kx("events").text  # a variable's name is no secret


@pytest.mark.slow  # kx run starts its fork server before it reads the options it refuses
def test_resume_asks_again_for_a_base_url_whose_password_was_not_recorded(kx, small_plan, project):
    from machine.acts.lifecycle import Act, record_run
    from machine.acts.workspace import Workspace
    from runners.supervisor.run import resumed_options

    kx("plan", "import", "plan.md")
    workspace = Workspace.open()
    record_run(workspace, "run", {"runner": "openai", "model": "m", "base_url": "http://u:PASS-short@h/v1"},
               Act(by="kx run"))
    with pytest.raises(BadInput, match="--base-url"):
        resumed_options(workspace, {})
    given = resumed_options(workspace, {"base_url": "http://u:PASS-short@h/v1"})
    assert given["base_url"] == "http://u:PASS-short@h/v1" and given["runner"] == "openai"
    result = kx("resume", "--review", "auto")
    assert result.code == 2 and "--base-url" in result.err and result.err.count("\n") == 1


def test_new_files_get_the_usual_mode(tmp_path):
    from ledger.files import write_atomic

    umask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.md", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "new.md").stat().st_mode & 0o777 == 0o644
