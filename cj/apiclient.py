"""A small synchronous client of cj-api's REST API, for the `cj` command line.

    with ApiClient.from_config(settings.client) as api:
        page = api.search({"phone": "+7 900 280-04-21"})
        api.download(call_uuid, Path("call.mp3"))

Errors become `ApiClientError` carrying the server's own message (`{"error": …}`) and
status, or a plain sentence when the server cannot be reached; the token is never
part of a message.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from cj.config import ClientConfig

DOWNLOAD_CHUNK = 256 * 1024


class ApiClientError(Exception):
    """The API refused the request, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, retry_after: str | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ApiClient:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    @classmethod
    def from_config(cls, config: ClientConfig, *, token: str | None = None) -> ApiClient:
        """A client for `config.url`; `token` (else `client.token`) is required."""
        secret = token or (config.token.get_secret_value() if config.token else None)
        if not secret:
            raise ApiClientError(
                "no token: give --token, or set client.token (CJ_CLIENT_TOKEN) to a reader token"
            )
        verify: ssl.SSLContext | bool = True
        if config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(config.ca_file))
        return cls(
            httpx.Client(
                base_url=config.url.rstrip("/"),
                headers={"authorization": f"Bearer {secret}", "user-agent": "cj-cli"},
                timeout=config.timeout_s,
                verify=verify,
            )
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def search(self, params: Mapping[str, str]) -> dict[str, Any]:
        """One page of `GET /api/v1/calls` (`calls`, `next_page_token`)."""
        return self._json("GET", "/api/v1/calls", params=dict(params))

    def get_call(self, call_uuid: str) -> dict[str, Any]:
        return self._json("GET", f"/api/v1/calls/{call_uuid}")

    def download(
        self,
        call_uuid: str,
        target: Path,
        *,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> tuple[int, str]:
        """Stream the recording into `target` (via `target.part`, renamed when complete).

        Returns (bytes, content type). A partial file left by an interrupted run is
        resumed with a Range request when the recording has not changed (If-Range).
        """
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.exists() else 0
        headers: dict[str, str] = {}
        etag_file = target.with_name(target.name + ".part.etag")
        if have and etag_file.exists():
            headers = {"range": f"bytes={have}-", "if-range": etag_file.read_text().strip()}
        try:
            with self._client.stream(
                "GET", f"/api/v1/calls/{call_uuid}/recording", headers=headers
            ) as response:
                if response.status_code not in (200, 206):
                    response.read()
                    raise _error(response)
                resumed = response.status_code == 206
                total = _total_size(response, have if resumed else 0)
                etag = response.headers.get("etag")
                if etag:
                    etag_file.write_text(etag)
                written = have if resumed else 0
                with part.open("ab" if resumed else "wb") as file:
                    for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                        file.write(chunk)
                        written += len(chunk)
                        if progress is not None:
                            progress(written, total)
                    file.flush()
                    os.fsync(file.fileno())
                content_type = response.headers.get("content-type", "")
        except httpx.HTTPError as exc:
            raise _unreachable(self._client, exc) from None
        if total is not None and written != total:
            raise ApiClientError(
                f"the download ended after {written} of {total} bytes; run it again to resume"
            )
        part.replace(target)
        etag_file.unlink(missing_ok=True)
        return written, content_type

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(self._client, exc) from None
        if response.status_code >= 400:
            raise _error(response)
        body = response.json()
        if not isinstance(body, dict):
            raise ApiClientError(f"unexpected answer from {path}: not a JSON object")
        return body


def iterate_pages(
    api: ApiClient, params: Mapping[str, str], *, pages: int | None = None
) -> Iterator[dict[str, Any]]:
    """Search pages, following `next_page_token` (at most `pages` of them)."""
    query = dict(params)
    count = 0
    while True:
        page = api.search(query)
        yield page
        count += 1
        token = page.get("next_page_token")
        if not token or (pages is not None and count >= pages):
            return
        query["page_token"] = token


def _total_size(response: httpx.Response, offset: int) -> int | None:
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None


def _error(response: httpx.Response) -> ApiClientError:
    message = f"HTTP {response.status_code}"
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(error, dict) and error.get("message"):
            message = f"{error.get('code', response.status_code)}: {error['message']}"
    except ValueError:
        pass
    return ApiClientError(message, response.status_code, response.headers.get("retry-after"))


def _unreachable(client: httpx.Client, exc: httpx.HTTPError) -> ApiClientError:
    return ApiClientError(f"cannot reach the API at {client.base_url}: {type(exc).__name__}: {exc}")
