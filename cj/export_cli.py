"""`cj export`: the recordings of a search as one ZIP, from cj-api's REST export.

    CJ_CLIENT_TOKEN=<reader token> cj export --url https://cj.example:8080 \\
        --phone '+7 900 280-04-21' --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z \\
        -o calls.zip

The address and token come from `--url` / `--token`, else the `client.*` settings (as
for `cj calls`: CJ_CLIENT_URL, CJ_CLIENT_TOKEN, or the configuration file).
The ZIP is written to `<output>.part` and renamed once complete and readable, so a
half-written file never takes the final name; a summary of its manifest is printed.
"""

from __future__ import annotations

import json
import os
import ssl
import zipfile
from collections import Counter
from pathlib import Path

import click
import httpx
from tqdm import tqdm

from cj.clitools import config_option, load_command_settings
from cj.config import ClientSettings

__all__ = ["export"]


@click.command()
@config_option
@click.option("--url", default=None, help="cj-api's REST address (default: client.url).")
@click.option("--token", default=None, help="Reader token (default: client.token; prefer that).")
@click.option("--phone", help="Calls with this number, any notation (suffix match).")
@click.option("--exact", is_flag=True, help="Match the whole number.")
@click.option("--from", "start", help="Interval start, RFC 3339 with a zone (inclusive).")
@click.option("--to", "end", help="Interval end, RFC 3339 with a zone (exclusive).")
@click.option("--direction", type=click.Choice(["inbound", "outbound", "internal", "unknown"]))
@click.option("--has-recording/--no-recording", default=None, help="Only calls with/without.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="Where to write the ZIP.",
)  # fmt: skip
@click.option(
    "--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA bundle for an https URL (default: client.ca_file, else the system's).",
)  # fmt: skip
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(
    config_path: Path | None,
    url: str | None,
    token: str | None,
    phone: str | None,
    exact: bool,
    start: str | None,
    end: str | None,
    direction: str | None,
    has_recording: bool | None,
    output: Path,
    ca_file: Path | None,
    quiet: bool,
) -> None:
    """Export the recordings of a search (the filters of GET /api/v1/calls) as a ZIP."""
    settings = load_command_settings(ClientSettings, config_path).client
    url = url or settings.url
    if not token and settings.token is not None:
        token = settings.token.get_secret_value()
    ca_file = ca_file or settings.ca_file
    if not token:
        raise click.UsageError(
            "no token: set client.token (CJ_CLIENT_TOKEN) or give --token, a reader token"
        )
    if phone is None and (start is None or end is None):
        raise click.UsageError("give --phone, or both --from and --to")
    params: dict[str, str] = {}
    for name, value in (("phone", phone), ("from", start), ("to", end), ("direction", direction)):
        if value is not None:
            params[name] = value
    if exact:
        params["exact"] = "true"
    if has_recording is not None:
        params["has_recording"] = "true" if has_recording else "false"
    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        verify = ssl.create_default_context(cafile=str(ca_file))
    partial = output.with_name(output.name + ".part")
    headers = {"Authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(60.0, read=300.0)
    try:
        with (
            httpx.Client(base_url=url, headers=headers, verify=verify, timeout=timeout) as client,
            client.stream("GET", "/api/v1/calls:export", params=params) as answer,
        ):
            if answer.status_code != 200:
                answer.read()
                raise click.ClickException(_refusal(answer))
            with (
                partial.open("wb") as out,
                tqdm(
                    unit="B", unit_scale=True, unit_divisor=1024, disable=quiet, desc="export"
                ) as bar,
            ):
                for chunk in answer.iter_bytes():
                    out.write(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        summary = _summary(partial)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(
            f"the export did not complete ({type(exc).__name__}: {exc}); nothing was kept"
        ) from None
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise click.ClickException(f"the server sent an unreadable ZIP ({exc})") from None
    partial.replace(output)
    click.echo(f"{output}: {summary}")


def _refusal(answer: httpx.Response) -> str:
    try:
        message = answer.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = answer.text[:200]
    if answer.status_code == 401:
        return f"the token was refused (wrong or expired): {message}"
    return f"the server refused the export ({answer.status_code}): {message}"


def _summary(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        if archive.testzip() is not None:
            raise zipfile.BadZipFile("a member's CRC does not match")
        manifest = json.loads(archive.read("manifest.json"))
    counts = Counter(row["status"] for row in manifest["calls"])
    parts = [f"{manifest['matched']} calls matched"]
    parts += [f"{count} {status}" for status, count in sorted(counts.items())]
    text = ", ".join(parts)
    if manifest.get("truncated"):
        text += " (TRUNCATED at the server's api.export_max_calls: narrow the search)"
    return text
