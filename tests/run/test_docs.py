"""The README stays true: its configuration reference matches the schema, its REST and
Python examples run against a real API, and every benchmark and setting is listed."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import trio

from cj.config.schema import ToolSettings
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN, RunningApi
from tests.run.compose import ROOT

README = ROOT / "README.md"
TEXT = README.read_text()


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def section(begin: str) -> str:
    """The README between `<!-- BEGIN {begin}` and `<!-- END {begin}` markers."""
    match = re.search(rf"<!-- BEGIN {begin}\b.*?-->(.*?)<!-- END {begin}\b", TEXT, re.DOTALL)
    assert match is not None, f"README.md has no {begin} section"
    return match[1]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def test_the_configuration_reference_is_generated_from_the_schema() -> None:
    reference = load_script("config_reference")
    expected = reference.render()
    assert expected in TEXT, (
        "README.md's configuration reference is out of date: "
        "run .venv/bin/python scripts/config_reference.py --write"
    )


def test_every_setting_has_its_environment_variable_in_the_readme() -> None:
    block = section("config-reference")
    for settings_section in dataclasses.fields(ToolSettings):
        fields = dataclasses.fields(getattr(ToolSettings(), settings_section.name))
        for field in fields:
            key = f"{settings_section.name}.{field.name}"
            env = f"CJ_{settings_section.name}_{field.name}".upper()
            assert f"| `{key}` | `{env}`" in block, f"{key} ({env}) is missing from the README"


def test_every_benchmark_is_listed_with_its_command() -> None:
    benches = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
    assert benches
    for name in benches:
        assert re.search(rf"\| `bench/{re.escape(name)}` \|.*\| `[^`]*bench/{name}`", TEXT), (
            f"bench/{name} is not listed in the README's Benchmarks section"
        )


def test_the_readme_names_only_make_targets_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.MULTILINE))
    for target in set(re.findall(r"`make ([a-z][a-z-]*)", TEXT)):
        assert target in targets, f"make {target}"


def test_the_readme_links_to_files_that_exist() -> None:
    for link in re.findall(r"\]\(((?:docs|protos|cj_agent|docker|samples)/[^)#]+)\)", TEXT):
        # docs/agent.md is written with the agent; the other links must resolve now.
        if link != "docs/agent.md":
            assert (ROOT / link).exists(), link


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples use curl")
async def test_the_rest_examples_run_as_written(running_api: RunningApi, tmp_path: Path) -> None:
    blocks = code_blocks(section("rest-examples"), "sh")
    assert len(blocks) >= 8
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "REST": running_api.endpoints.rest_url,
        "AGENT": AGENT_TOKEN,
        "READER": READER_TOKEN,
    }
    with trio.fail_after(60):
        outputs = []
        for block in blocks:
            result = await trio.run_process(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path,
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert result.returncode == 0, f"{block}\n{result.stderr.decode()}"
            outputs.append(result.stdout.decode())
    added, batch, check, upload, by_phone, by_interval, one, download, ops = outputs
    assert '"outcome":"inserted"' in added
    assert '"inserted":1' in batch
    assert check.count('"exists":true') == 2
    assert '"duplicate":false' in upload
    assert "7f3c2a10-5d6e-4b8a-9c1d-2e3f4a5b6c7d" in by_phone
    assert "7f3c2a10-5d6e-4b8a-9c1d-2e3f4a5b6c7d" in by_interval
    assert '"status":"uploaded"' in one
    assert download.strip() == "206 1024 bytes"
    (saved,) = [p for p in await trio.Path(tmp_path).iterdir() if p.name.startswith("7f3c2a10")]
    sample = trio.Path(ROOT / "samples/compact/5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.wav")
    assert await saved.read_bytes() == await sample.read_bytes()
    assert '"status":"ok"' in ops and "cj_api_requests_total" in ops and '"openapi"' in ops


async def test_the_python_example_runs_as_written(
    running_api: RunningApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (source,) = code_blocks(section("python-example"), "python")
    # Everything but the last line, which runs it against a made-up address.
    body, last = source.rstrip().rsplit("\n", 1)
    assert last.startswith("trio.run(find_and_download,")
    namespace: dict[str, object] = {}
    exec(compile(body, "README.md", "exec"), namespace)  # our own README's code
    # One call with a recording to find: added and uploaded through the API itself.
    wav = (ROOT / "samples/compact/5b0f2c9e-8d4a-4e1b-9f3e-2a7c61d0b111.wav").read_bytes()
    await _add_call_with_recording(running_api, wav)
    downloads = tmp_path / "downloads"  # tmp_path also holds the API's storages
    downloads.mkdir()
    monkeypatch.chdir(downloads)
    with trio.fail_after(30):
        await namespace["find_and_download"](  # type: ignore[operator]
            running_api.endpoints.grpc_address, READER_TOKEN, "+7 900 280-04-21"
        )
    printed = capsys.readouterr().out
    assert "7f3c2a10-5d6e-4b8a-9c1d-2e3f4a5b6c7d" in printed and "saved" in printed
    (saved,) = await trio.Path(downloads).iterdir()
    assert await saved.read_bytes() == wav


async def _add_call_with_recording(api: RunningApi, wav: bytes) -> None:
    import hashlib

    from google.protobuf.timestamp_pb2 import Timestamp

    from cj.proto import calljournal_pb2 as pb

    uuid = "7f3c2a10-5d6e-4b8a-9c1d-2e3f4a5b6c7d"
    started = Timestamp()
    started.FromJsonString("2026-03-10T09:00:00Z")
    async with api.client(AGENT_TOKEN) as journal:
        await journal.add_call(
            pb.Call(
                uuid=uuid,
                caller_number="+7 (900) 280-04-21",
                destination_number="84957001020",
                started_at=started,
                recording_name=f"{uuid}.wav",
            )
        )
        header = pb.UploadHeader(
            call_uuid=uuid,
            file_name=f"{uuid}.wav",
            size=len(wav),
            sha256=hashlib.sha256(wav).hexdigest(),
        )
        await journal.upload_recording(header, [wav])
