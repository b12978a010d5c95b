"""`cj export` against a live cj-api: the ZIP lands under its name, whole, summarised."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import httpx
import trio
from click.testing import CliRunner, Result

from cj.export_cli import export
from cj_api.call_codec import call_to_json
from tests.factories import make_call
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN, RunningApi

TIMEOUT_S = 30


async def run_cli(args: list[str], env: dict[str, str]) -> Result:
    return await trio.to_thread.run_sync(
        lambda: CliRunner().invoke(export, args, env=env, catch_exceptions=False)
    )


async def test_cj_export_writes_the_zip_and_summarises_it(
    running_api: RunningApi, tmp_path: Path
) -> None:
    with trio.fail_after(TIMEOUT_S):
        url = running_api.endpoints.rest_url
        calls = [make_call(caller="+7 900 111-22-33"), make_call(caller="79001112233")]
        wav = b"RIFF" + bytes(2000)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {AGENT_TOKEN}"}
        ) as agent:
            body = {"calls": [call_to_json(call) for call in calls]}
            assert (await agent.post("/api/v1/calls:batch", json=body)).status_code == 200
            sent = await agent.put(
                f"/api/v1/calls/{calls[0].uuid}/recording",
                content=wav,
                headers={
                    "Content-Type": "audio/wav",
                    "X-Content-SHA256": hashlib.sha256(wav).hexdigest(),
                },
            )
            assert sent.status_code == 201
        output = tmp_path / "out" / "calls.zip"
        output.parent.mkdir()
        env = {"CJ_CLIENT_TOKEN": READER_TOKEN, "CJ_CLIENT_URL": url}
        done = await run_cli(["--phone", "9001112233", "-o", str(output), "--quiet"], env)
        wrong = await run_cli(
            ["--phone", "1", "-o", str(tmp_path / "x.zip")], {**env, "CJ_CLIENT_TOKEN": "x" * 20}
        )
        no_token = await run_cli(
            ["--phone", "1", "-o", str(tmp_path / "x.zip")], {"CJ_CLIENT_TOKEN": ""}
        )
        assert done.exit_code == 0, done.output
        assert "2 calls matched, 1 included, 1 no-recording" in done.output
        with zipfile.ZipFile(output) as archive:
            (member,) = [name for name in archive.namelist() if name.endswith(".wav")]
            assert archive.read(member) == wav  # not encoded yet: the original
            manifest = json.loads(archive.read("manifest.json"))
        assert manifest["matched"] == 2
        assert sorted(p.name for p in output.parent.iterdir()) == ["calls.zip"]  # no .part
        assert wrong.exit_code == 1 and "wrong or expired" in wrong.output
        assert not (tmp_path / "x.zip").exists()
        assert no_token.exit_code == 2 and "CJ_CLIENT_TOKEN" in no_token.output
