"""Load a settings dataclass from one TOML file plus `CJ_*` environment overrides.

Environment variable names are derived from the schema: `CJ_<SECTION>_<KEY>`, for
example `CJ_DATABASE_URL` or `CJ_API_GRPC_PORT`. Entries of named tables use the name
in the middle: `CJ_STORAGE_BACKENDS_<NAME>_<KEY>` (`CJ_STORAGE_BACKENDS_TEMP_PATH`).
Lists take a comma-separated value (`CJ_QUEUE_NSQD_TCP_ADDRESSES=a:4150,b:4150`) or
JSON; lists of tables (`CJ_AUTH_TOKENS`, `CJ_AGENT_SOURCES`) take JSON.

Errors name the key, where its value came from and what is wrong; values are never
echoed, so a secret cannot leak through an error message.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import pydantic

from cj.config.schema import ALL_SECTIONS

T = TypeVar("T")

ENV_PREFIX = "CJ_"
# CJ_* variables that are not settings (CJ_SQL_DIR: where `cj migrate` finds sql/, set in
# the Docker image, whose daemons must not refuse it).
RESERVED_ENV = ("CJ_CONFIG", "CJ_SQL_DIR", "CJ_TEST_", "CJ_DEV_", "CJ_BENCH_")


class ConfigError(Exception):
    """The configuration is invalid; the message names every key at fault."""


def load_settings(
    settings_type: type[T],
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> T:
    """Build `settings_type` from the TOML file at `path` and `env` overrides.

    `path=None` uses `$CJ_CONFIG` when set, else defaults plus environment only.
    """
    env = dict(env) if env is not None else dict(_os_environ())
    if path is None and env.get("CJ_CONFIG"):
        path = Path(env["CJ_CONFIG"])
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    if path is not None:
        data = _read_toml(path)
        for section in data:
            if section not in ALL_SECTIONS:
                raise ConfigError(
                    f"{path}: unknown section [{section}] "
                    f"(known: {', '.join(sorted(ALL_SECTIONS))})"
                )
        _record_origins(data, (), f"{path}", origins)
    wanted = {f.name for f in dataclasses.fields(settings_type)}  # type: ignore[arg-type]
    data = {k: v for k, v in data.items() if k in wanted}
    defaults = settings_type()
    for var, keypath, value in _env_overrides(settings_type, env):
        _seed_named_entry(data, keypath, defaults)
        _set_path(data, keypath, value)
        origins[keypath] = f"environment {var}"
    try:
        return pydantic.TypeAdapter(settings_type).validate_python(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None


def _os_environ() -> Mapping[str, str]:
    import os

    return os.environ


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"configuration file {path} is not readable") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None


def _record_origins(
    node: Any, prefix: tuple[str, ...], origin: str, out: dict[tuple[str, ...], str]
) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _record_origins(value, (*prefix, str(key)), origin, out)
    else:
        out[prefix] = origin


def _seed_named_entry(data: dict[str, Any], keypath: tuple[str, ...], defaults: Any) -> None:
    """Let `CJ_STORAGE_BACKENDS_TEMP_PATH` amend the default `temp` backend."""
    if len(keypath) != 4:
        return
    section, table, entry, _ = keypath
    default_table = getattr(getattr(defaults, section), table, None)
    if not isinstance(default_table, dict):
        return
    present = data.get(section, {}).get(table)
    if present is None:  # the file left the table at its default: amend the default
        seeded = {name: dataclasses.asdict(value) for name, value in default_table.items()}
        _set_path(data, (section, table), seeded)
    elif entry not in present and entry in default_table:
        _set_path(data, (section, table, entry), dataclasses.asdict(default_table[entry]))


def _set_path(data: dict[str, Any], keypath: tuple[str, ...], value: Any) -> None:
    node = data
    for key in keypath[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keypath[-1]] = value


# --- environment ---------------------------------------------------------------------


def _env_overrides(
    settings_type: type[Any], env: Mapping[str, str]
) -> list[tuple[str, tuple[str, ...], Any]]:
    sections = {f.name: f for f in dataclasses.fields(settings_type)}
    hints_of_settings = typing.get_type_hints(settings_type)
    overrides = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var.startswith(RESERVED_ENV):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section = next((s for s in sorted(ALL_SECTIONS) if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"environment {var}: not a setting (expected CJ_<SECTION>_<KEY> with a "
                f"section among {', '.join(sorted(ALL_SECTIONS))})"
            )
        if section not in sections:
            continue  # a setting of another daemon: shared env files are fine
        section_type = _dataclass_of(hints_of_settings[section])
        keypath, field_type = _resolve(section_type, rest[len(section) + 1 :], var)
        overrides.append((var, (section, *keypath), _parse_env_value(env[var], field_type, var)))
    return overrides


def _resolve(dataclass_type: type[Any], rest: str, var: str) -> tuple[tuple[str, ...], Any]:
    hints = typing.get_type_hints(dataclass_type, include_extras=True)
    for name in sorted(hints, key=len, reverse=True):
        hint = _strip_annotated(hints[name])
        if rest == name:
            return (name,), hint
        if rest.startswith(name + "_") and get_origin(hint) is dict:
            # a named table: <field>_<entry name>_<entry key>
            entry_types = _union_members(get_args(hint)[1])
            remainder = rest[len(name) + 1 :]
            for entry_type in entry_types:
                entry_hints = typing.get_type_hints(entry_type, include_extras=True)
                for key in sorted(entry_hints, key=len, reverse=True):
                    if remainder.endswith("_" + key) and len(remainder) > len(key) + 1:
                        entry = remainder[: -len(key) - 1]
                        return (name, entry, key), _strip_annotated(entry_hints[key])
    known = ", ".join(sorted(hints))
    raise ConfigError(f"environment {var}: no such setting (keys of this section: {known})")


def _parse_env_value(raw: str, field_type: Any, var: str) -> Any:
    text = raw.strip()
    if text == "" and _is_optional(field_type):
        return None
    origin = get_origin(_strip_optional(field_type))
    if origin in (tuple, list, frozenset, set, dict):
        if text.startswith(("[", "{")):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment {var}: invalid JSON ({exc.msg})") from None
        if origin is dict:
            raise ConfigError(f"environment {var}: expected a JSON object")
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _strip_annotated(hint: Any) -> Any:
    while get_origin(hint) is typing.Annotated:
        hint = get_args(hint)[0]
    return hint


def _union_members(hint: Any) -> list[type[Any]]:
    hint = _strip_annotated(hint)
    if get_origin(hint) in (typing.Union, types.UnionType):
        return [_strip_annotated(a) for a in get_args(hint)]
    return [hint]


def _is_optional(hint: Any) -> bool:
    return type(None) in _union_members(hint)


def _strip_optional(hint: Any) -> Any:
    members = [m for m in _union_members(hint) if m is not type(None)]
    return members[0] if len(members) == 1 else hint


def _dataclass_of(hint: Any) -> type[Any]:
    hint = _strip_annotated(hint)
    if not dataclasses.is_dataclass(hint):
        raise TypeError(f"{hint!r} is not a dataclass")
    return hint  # type: ignore[return-value]


# --- errors --------------------------------------------------------------------------


def _describe(exc: pydantic.ValidationError, origins: Mapping[tuple[str, ...], str]) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = _format_loc(error["loc"])
        origin = _origin_of(loc, origins)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "union_tag_not_found":
            message = "missing 'kind' (one of: filesystem, s3)"
        elif error["type"] == "union_tag_invalid":
            message = "unknown 'kind' (expected one of: filesystem, s3)"
        where = f" (from {origin})" if origin else ""
        lines.append(f"{key}{where}: {message}" if key else f"{message}{where}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("FilesystemStorageConfig", "S3StorageConfig", "filesystem", "s3"):
            continue  # pydantic's union tags say nothing to the reader
        else:
            out += f".{part}" if out else str(part)
    return out


def _origin_of(loc: tuple[str, ...], origins: Mapping[tuple[str, ...], str]) -> str | None:
    # The value itself, or the nearest enclosing table that came from somewhere.
    for end in range(len(loc), 0, -1):
        if loc[:end] in origins:
            return origins[loc[:end]]
    found = {o for path, o in origins.items() if path[: len(loc)] == loc}
    return found.pop() if len(found) == 1 else None
