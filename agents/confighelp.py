"""The agent's configuration reference for `--help`, generated from the settings models. Pure.

Every setting with its TOML key, default and description, the environment variables, and the
sample config (agents/example.toml), so the help cannot drift from the models.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from agents.settings import SHARED_ENV, AgentSettings

EXAMPLE = Path(__file__).with_name("example.toml")


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the BaseModel inside an annotation, whether it is a list of them)."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin is list:
        inner, _ = _model_of(typing.get_args(annotation)[0])
        return inner, inner is not None
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner, many = _model_of(arg)
            if inner is not None:
                return inner, many
    return None, False


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return ""
    else:
        return "required"
    if isinstance(value, BaseModel | list | dict) and not value:
        return ""
    if isinstance(value, BaseModel):
        return ""
    return "" if value is None else repr(value) if isinstance(value, str) else str(value)


def rows(model: type[BaseModel] = AgentSettings, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) for every setting, nested keys dotted."""
    out: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        inner, many = _model_of(field.annotation)
        if inner is not None:
            if many:
                out.append((f"[[{key}]]", "", field.description or "a list of tables"))
            out += rows(inner, f"{key}[]." if many else f"{key}.")
            continue
        out.append((key, _default(field), field.description or ""))
    return out


def help_epilog() -> str:
    """Settings, environment and the sample config, as click epilog text (no re-wrapping)."""
    width = max(len(k) for k, _, _ in rows())
    lines = ["\b", "Settings (TOML key, default, meaning):"]
    for key, default, text in rows():
        shown = f" [{default}]" if default else ""
        lines.append(f"  {key.ljust(width)} {text}{shown}")
    lines += ["", "\b", "Environment (wins over the file):",
              "  SURPLUS_AGENT_<KEY>  any key above, dots as __, e.g. SURPLUS_AGENT_KAFKA__LINGER_MS=20",
              *(f"  {env.ljust(24)} kafka.{name}" for env, name in SHARED_ENV.items()),
              "  SURPLUS_AGENT_CONFIG     the --config file"]
    sample = EXAMPLE.read_text() if EXAMPLE.is_file() else "(see agents/example.toml)\n"
    lines += ["", "\b", f"Sample config ({EXAMPLE.name}):"]
    for paragraph in sample.strip().split("\n\n"):
        lines += ["\b", *(f"  {line}" for line in paragraph.splitlines()), ""]
    return "\n".join(lines)
