"""pydantic-settings sources shared by the agent's and the worker's settings models. Pure (env read).

`EnvGroup` maps a group of shared environment variables (e.g. the KAFKA_* ones) into one nested
field; `ContextValues` hands in the values of a `--config` file that `load_settings` set in a
ContextVar, so the file ranks below the environment (`settings_customise_sources` order).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource


class EnvGroup(PydanticBaseSettingsSource):
    """`{field: {name: os.environ[var]}}` for each set variable of `variables` (var -> name)."""

    def __init__(self, settings_cls: type[BaseSettings], field: str, variables: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.field, self.variables = field, variables

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {name: os.environ[env] for env, name in self.variables.items() if os.environ.get(env)}
        return {self.field: found} if found else {}


class ContextValues(PydanticBaseSettingsSource):
    """The values held in `values` (a config file's, set by the caller around construction)."""

    def __init__(self, settings_cls: type[BaseSettings], values: ContextVar[dict[str, Any]]) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self.values.get({})
