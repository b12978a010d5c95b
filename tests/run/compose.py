"""Reading docker/compose.yaml, its env file and the Dockerfile the way Docker would.

No Docker engine is needed: the compose file is plain YAML (anchors and merge keys
resolved by PyYAML), variables are interpolated with their defaults, env files are
parsed with compose's rules for the simple format we allow ourselves, and the
Dockerfile is parsed by BuildKit's own parser (the `dockerfile` package).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
OUR_IMAGE = "calljournal:latest"

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as file:
        document = yaml.safe_load(file)
    assert isinstance(document, dict), "compose.yaml is not a mapping"
    return document


def interpolate(value: str, variables: dict[str, str] | None = None) -> str:
    """`${NAME:-default}` with `variables` (else the default); `$$` is a literal `$`."""
    variables = variables or {}

    def substitute(match: re.Match[str]) -> str:
        name = match["name"]
        if name in variables:
            return variables[name]
        if match["default"] is None:
            raise AssertionError(f"{value!r}: ${{{name}}} has no default")
        return match["default"]

    return _VARIABLE.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped.

    Compose would also strip quotes, expand `${…}` and cut ` #` comments from values;
    our env file must need none of that (so that every reader agrees on it).
    """
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        assert "=" in stripped, f"{where}: not KEY=VALUE"
        key, value = stripped.split("=", 1)
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{where}: bad variable name {key!r}"
        assert key not in values, f"{where}: {key} is set twice"
        assert not value.startswith(("'", '"')), f"{where}: quoted value (write it bare)"
        assert "$" not in value, f"{where}: '$' would be interpolated by compose"
        assert " #" not in value, f"{where}: ' #' would start a comment"
        values[key] = value
    return values


def console_scripts() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return set(tomllib.load(file)["project"]["scripts"])


@dataclass(frozen=True)
class Instruction:
    cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    line: int


def dockerfile_instructions(stage: str | None = "last") -> list[Instruction]:
    """The instructions of the Dockerfile; `stage="last"`: of the final stage only."""
    parsed = [
        Instruction(c.cmd.upper(), tuple(c.flags), tuple(c.value), c.json, c.start_line)
        for c in dockerfile.parse_file(str(DOCKERFILE))
    ]
    if stage != "last":
        return parsed
    last_from = max(i for i, ins in enumerate(parsed) if ins.cmd == "FROM")
    return parsed[last_from:]


def dockerfile_env() -> dict[str, str]:
    """The ENV of the final stage, as the containers see it."""
    env: dict[str, str] = {}
    for ins in dockerfile_instructions():
        if ins.cmd == "ENV":
            pairs = ins.value
            env.update(dict(zip(pairs[::2], pairs[1::2], strict=True)))
    return env


def dockerfile_copies() -> dict[str, Path]:
    """Final-stage COPY destinations (file or directory in the image) → repository path."""
    copies: dict[str, Path] = {}
    for ins in dockerfile_instructions():
        if ins.cmd != "COPY" or any(f.startswith("--from") for f in ins.flags):
            continue
        *sources, destination = ins.value
        for source in sources:
            target = destination
            if destination.endswith("/"):
                target = destination + Path(source).name
            copies[target] = ROOT / source
    return copies
