"""The data-center agent: collectors -> disk spool -> Kafka. Needs only the `agent` extra."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("surplus")
except metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0.0.0+source"
