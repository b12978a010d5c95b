"""Container health checks: `python healthcheck.py api|encoder|agent` exits 0 when healthy.

- api: GET /healthz on the REST port (`CJ_API_REST_PORT`, default 8080) answers 200.
  (Plain urllib: the slim image has no curl. TLS is not checked: with api.tls_* set,
  point the check at /healthz over https or use a TCP check.)
- encoder: the database answers (`SELECT 1`); an encoder without it cannot work.
- agent: every source's CDR and recordings directories exist and are writable (a bind
  mount with the wrong owner is the usual failure; the agent retries the server by itself).

Settings are read like the daemons read them (`CJ_*`, `CJ_CONFIG`). Prints one line
saying what is wrong, on failure.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def check_api() -> str | None:
    from cj.config import ApiSettings, load_settings

    settings = load_settings(ApiSettings)
    url = f"http://127.0.0.1:{settings.api.rest_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            if response.status != 200:
                return f"{url} answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"
    return None


def check_encoder() -> str | None:
    import psycopg

    from cj.config import EncoderSettings, load_settings

    settings = load_settings(EncoderSettings)
    try:
        with psycopg.connect(
            settings.database.url.get_secret_value(),
            connect_timeout=max(1, int(TIMEOUT_S)),
            application_name="cj-healthcheck",
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"database: {exc}".strip()
    return None


def check_agent() -> str | None:
    from cj.config import AgentSettings, load_settings

    settings = load_settings(AgentSettings)
    if not settings.agent.sources:
        return "agent.sources is empty"
    for source in settings.agent.sources:
        for directory in {source.cdr_dir, source.recordings_dir}:
            if not directory.is_dir():
                return f"source {source.name!r}: {directory} is not a directory"
            if not os.access(directory, os.W_OK | os.X_OK):
                return f"source {source.name!r}: {directory} is not writable by uid {os.getuid()}"
    return None


CHECKS = {"api": check_api, "encoder": check_encoder, "agent": check_agent}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: healthcheck.py {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    try:
        problem = CHECKS[argv[0]]()
    except Exception as exc:  # a bad configuration, say: unhealthy, and say why
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
