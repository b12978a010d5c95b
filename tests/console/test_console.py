"""The web console in a real browser: Debian's Chromium, driven by Playwright, against a
live cj-api (real PostgreSQL, filesystem storages) whose recordings the real encoder
turned into MP3s.

Playwright's sync API runs in a worker thread (it brings its own event loop), while the
API serves from this test's Trio loop. Never `playwright install`: the browser is
/usr/bin/chromium (`make browser` installs it as root); without it the test fails and
says what to install.

CJ_CONSOLE_SCREENSHOTS=docs also saves screenshots of the console (desktop and phone
width) into that folder: docs/console-search.png, docs/console-call.png, …
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import trio

from cj.db import open_database
from cj.model import Call
from cj.queue.postgres import PostgresPublisher
from cj_api.call_codec import call_to_json
from tests.audio.helpers import chirp, write_wav
from tests.encoder.test_service import QUEUE, Rig, make_storages
from tests.encoder.test_service import settings as encoder_settings
from tests.factories import make_call
from tests.fixtures.api import AGENT_TOKEN, READER_TOKEN, RunningApi

CHROMIUM = Path(os.environ.get("CJ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
TIMEOUT_S = 120
PAGE_SIZE = 50  # the console's
RECORDING_S = 4.0
STORED_NUMBER = "+79002800421"  # how the PBX wrote it
TYPED_NUMBER = "8 (900) 280-04-21"  # how the operator types it
NOW = datetime.now(UTC).replace(microsecond=0)


def require_browser() -> None:
    """Fail (never skip) when the browser or its driver is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (as root: apt-get install "
            "chromium; `make browser` does it) for the console's browser test"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("Playwright for Python is missing: pip install -e '.[test]'")


@dataclass
class Scene:
    """What the browser should find."""

    played: Call  # newest, with a real MP3
    mp3: bytes
    private: Call
    matching: int  # calls with the number


async def rest(api: RunningApi, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=api.endpoints.rest_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def build_scene(api: RunningApi, tmp_path: Path) -> Scene:
    """52 calls with the number (paging), the newest with a recording the real encoder
    makes; a private one with a recording; and one other call."""
    calls = [
        make_call(
            caller=STORED_NUMBER,
            destination="1001",
            started_at=NOW - timedelta(minutes=10 + 60 * i),
            caller_name="Ivan Petrov" if i == 0 else "",
        )
        for i in range(PAGE_SIZE + 2)
    ]
    played = calls[0]
    private = make_call(
        caller="1002", destination=STORED_NUMBER, started_at=NOW - timedelta(minutes=30)
    )
    private = Call(**{**private.__dict__, "private": True})
    other = make_call(caller="74950000000", started_at=NOW - timedelta(minutes=20))
    wav = write_wav(tmp_path / "call.wav", chirp(8000, RECORDING_S, 2), 8000, "PCM_16")
    data = wav.read_bytes()
    async with await rest(api, AGENT_TOKEN) as agent:
        body = {"calls": [call_to_json(c, include_raw=True) for c in [*calls, private, other]]}
        added = await agent.post("/api/v1/calls:batch", json=body)
        assert added.json()["inserted"] == len(body["calls"]), added.text
        for call in (played, private):
            sent = await agent.put(
                f"/api/v1/calls/{call.uuid}/recording",
                content=data,
                headers={
                    "Content-Type": "audio/wav",
                    "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
                },
            )
            assert sent.status_code == 201, sent.text
    await encode(api, [played.uuid, private.uuid])
    async with await rest(api, READER_TOKEN) as reader:
        mp3 = (await reader.get(f"/api/v1/calls/{played.uuid}/recording")).content
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0, mp3[:4]  # an MPEG audio frame
    return Scene(played, mp3, private, len(calls) + 1)


async def encode(api: RunningApi, uuids: list[uuid.UUID]) -> None:
    """Run the real encoder (tests/encoder's rig) on the API's database and storages
    until these recordings are done."""
    from cj_encoder.worker import JobOutcome

    async with open_database(api.settings.database) as db:
        rig = Rig(db, make_storages(api.root), PostgresPublisher(db, QUEUE.topic))
        async with rig.encoder(encoder_settings()):
            for call_uuid in uuids:
                outcome = await rig.wait_for(call_uuid, *JobOutcome)
                assert outcome is JobOutcome.STORED, outcome


def drive_browser(url: str, scene: Scene, downloads: Path, shots: Path | None) -> dict[str, Any]:
    """The whole visit, in Playwright's sync API (a worker thread). Returns what the
    browser saw, for the assertions."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict[str, Any] = {}
    profile = tempfile.mkdtemp(prefix="cj-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                accept_downloads=True,
                downloads_path=str(downloads),
                viewport={"width": 1280, "height": 860},
                timezone_id="Europe/Moscow",
                locale="en-GB",
            )
            context.set_default_timeout(20_000)
            page = context.new_page()
            errors: list[str] = []
            recording_statuses: list[int] = []
            page.on(
                "response",
                lambda answer: (
                    recording_statuses.append(answer.status)
                    if "/recording?access=" in answer.url
                    else None
                ),
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )
            page.goto(url)
            message = page.locator("#message")

            # A wrong token is refused in plain words.
            page.get_by_label("Reader token").fill("not-the-token")
            page.get_by_role("button", name="Sign in").click()
            expect(message).to_contain_text("wrong or has expired")
            seen["refused"] = message.inner_text()
            expect(page.locator("#sign-in")).to_be_visible()
            if shots:
                page.screenshot(path=str(shots / "console-sign-in.png"))

            # Sign in; search by the number written another way; page with More.
            page.get_by_label("Reader token").fill(READER_TOKEN)
            page.keyboard.press("Enter")
            expect(page.locator("#search")).to_be_visible()
            seen["stored_token"] = page.evaluate("sessionStorage.getItem('calljournal.token')")
            page.get_by_label("Phone number").fill(TYPED_NUMBER)
            page.get_by_role("button", name="Search", exact=True).click()
            rows = page.locator("#results tbody tr")
            expect(rows).to_have_count(PAGE_SIZE)
            expect(page.get_by_role("button", name="More")).to_be_visible()
            seen["first_row"] = rows.first.inner_text()
            seen["first_title"] = rows.first.locator("time").get_attribute("title")
            if shots:
                page.screenshot(path=str(shots / "console-search.png"))
            page.get_by_role("button", name="More").click()
            expect(rows).to_have_count(scene.matching)
            expect(page.get_by_role("button", name="More")).to_be_hidden()
            seen["rows"] = rows.count()

            # Export the search: a ZIP with the MP3 and the private call withheld.
            with page.expect_download() as exported:
                page.get_by_role("button", name="Export ZIP").click()
            seen["zip"] = Path(exported.value.path()).read_bytes()

            # Open the newest call: details, player, download.
            rows.first.get_by_role("link").click()
            expect(page.locator("#call")).to_be_visible()
            expect(page.locator("#call-title")).to_contain_text(STORED_NUMBER)
            seen["fields"] = page.locator("#call-fields").inner_text()
            player = page.locator("#player")
            expect(player).to_be_visible()
            # Waits are the media element's own events (the page's CSP forbids the
            # eval behind wait_for_function, which is as it should be).
            seen["duration"] = player.evaluate(
                """p => new Promise(done => {
                    const ready = () => p.duration > 0 && isFinite(p.duration);
                    if (ready()) done(p.duration);
                    else p.addEventListener("durationchange", function check() {
                        if (ready()) { p.removeEventListener("durationchange", check);
                                       done(p.duration); } });
                })"""
            )
            seen["played_to"] = player.evaluate(
                """p => new Promise((done, fail) => {
                    p.addEventListener("timeupdate", function tick() {
                        if (p.currentTime > 0.2) { p.removeEventListener("timeupdate", tick);
                                                   p.pause(); done(p.currentTime); } });
                    p.play().catch(fail);
                })"""
            )
            seen["seeked_to"] = player.evaluate(
                """p => new Promise(done => {
                    p.addEventListener("seeked", () => done(p.currentTime), {once: true});
                    p.currentTime = 3;
                })"""
            )
            page.locator("#raw summary").click()
            expect(page.locator("#raw-text")).to_be_visible()
            if shots:
                page.screenshot(path=str(shots / "console-call.png"), full_page=True)
            with page.expect_download() as downloaded:
                page.get_by_role("link", name="Download (MP3)").click()
            seen["recording_statuses"] = list(recording_statuses)
            seen["download_name"] = downloaded.value.suggested_filename
            seen["download"] = Path(downloaded.value.path()).read_bytes()

            # A private call: a lock, no player.
            page.goto(f"{url}#call/{scene.private.uuid}")
            expect(page.locator("#lock")).to_be_visible()
            expect(player).to_be_hidden()
            expect(page.locator("#download")).to_be_hidden()
            if shots:
                page.screenshot(path=str(shots / "console-private.png"))

            # A call that does not exist, in plain words.
            page.goto(f"{url}#call/{uuid.uuid4()}")
            expect(message).to_contain_text("This call was not found.")

            # Phone width: readable, nothing wider than the screen.
            page.set_viewport_size({"width": 375, "height": 800})
            page.goto(f"{url}#search")
            page.get_by_label("Phone number").fill(TYPED_NUMBER)
            page.get_by_label("Phone number").press("Enter")
            expect(rows).to_have_count(PAGE_SIZE)
            seen["phone_overflow"] = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            if shots:
                page.screenshot(path=str(shots / "console-phone.png"))
                page.locator("#status").evaluate("e => window.scrollTo(0, e.offsetTop - 8)")
                page.screenshot(path=str(shots / "console-phone-results.png"))
                page.goto(f"{url}#call/{scene.played.uuid}")
                expect(player).to_be_visible()
                page.screenshot(path=str(shots / "console-call-phone.png"), full_page=True)

            # An interval typed in the browser's zone (Moscow, UTC+3) is sent as UTC.
            moscow = scene.played.started_at.astimezone(ZoneInfo("Europe/Moscow"))
            page.goto(f"{url}#search")
            page.get_by_label("Phone number").fill("")
            page.get_by_label("From", exact=True).fill(
                f"{moscow - timedelta(minutes=2):%Y-%m-%dT%H:%M:%S}"
            )
            page.get_by_label("To", exact=True).fill(
                f"{moscow + timedelta(minutes=2):%Y-%m-%dT%H:%M:%S}"
            )
            page.get_by_role("button", name="Search", exact=True).click()
            expect(rows).to_have_count(1)
            seen["interval_row"] = rows.first.inner_text()

            # Sign out forgets the token.
            page.get_by_role("button", name="Sign out").click()
            expect(page.locator("#sign-in")).to_be_visible()
            seen["token_after"] = page.evaluate("sessionStorage.getItem('calljournal.token')")
            seen["errors"] = [e for e in errors if "401" not in e and "404" not in e]
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return seen


@pytest.fixture
async def scene(running_api: RunningApi, tmp_path: Path) -> AsyncIterator[Scene]:
    require_browser()
    with trio.fail_after(60):
        yield await build_scene(running_api, tmp_path)


async def test_the_console_in_a_real_browser(
    running_api: RunningApi, scene: Scene, tmp_path: Path
) -> None:
    shots_dir = os.environ.get("CJ_CONSOLE_SCREENSHOTS")
    shots = Path(await trio.Path(shots_dir).resolve()) if shots_dir else None
    if shots:
        await trio.Path(shots).mkdir(parents=True, exist_ok=True)
    downloads = tmp_path / "downloads"
    await trio.Path(downloads).mkdir()
    url = f"{running_api.endpoints.rest_url}/"
    started = time.perf_counter()
    with trio.fail_after(TIMEOUT_S):
        seen = await trio.to_thread.run_sync(
            functools.partial(drive_browser, url, scene, downloads, shots)
        )
    print(f"browser visit: {time.perf_counter() - started:.1f} s")

    assert "wrong or has expired" in seen["refused"]
    assert seen["stored_token"] == READER_TOKEN
    assert STORED_NUMBER in seen["first_row"] and "Ivan Petrov" in seen["first_row"]
    assert seen["first_title"].endswith(" UTC")
    assert seen["rows"] == scene.matching
    assert "Ivan Petrov" in seen["interval_row"]
    assert "NORMAL_CLEARING" in seen["fields"] and "recv_bye" in seen["fields"]
    assert abs(seen["duration"] - RECORDING_S) < 0.3, seen["duration"]
    assert seen["played_to"] > 0.2 and abs(seen["seeked_to"] - 3) < 0.1
    assert 206 in seen["recording_statuses"]  # the player streams by Range, signed link
    assert seen["download"] == scene.mp3
    assert seen["download_name"] == f"{scene.played.uuid}.mp3"
    assert seen["phone_overflow"] <= 0
    assert seen["token_after"] is None
    assert seen["errors"] == []

    archive = zipfile.ZipFile(io.BytesIO(seen["zip"]))
    manifest = json.loads(archive.read("manifest.json"))
    statuses = {row["uuid"]: row["status"] for row in manifest["calls"]}
    assert statuses[str(scene.private.uuid)] == "withheld-private"
    assert statuses[str(scene.played.uuid)] == "included"
    (mp3_name,) = [name for name in archive.namelist() if name.endswith(".mp3")]
    assert archive.read(mp3_name) == scene.mp3
    exported = running_api.query("SELECT call_uuid, result FROM audit_log WHERE action = 'export'")
    assert {(row["call_uuid"], row["result"]) for row in exported} == {
        (scene.played.uuid, "allowed"),
        (scene.private.uuid, "permission_denied"),
    }
