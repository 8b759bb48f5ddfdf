"""The `cpn.restatement.v1` event (SPEC §4.1): a closed hour's statement was restated. Pure.

Published by `surplus ledger close` on topic `<prefix>restatements`, message key = `dc_id`, in
structured mode with the same envelope rules as telemetry (SPEC §3: `source` is
`//cpn/dc/<dc_id>`, the DC whose ledger it is; `id` is `restatement-<YYYYMMDDHH>-v<version>`,
stable across resends; `time` is when the new version was issued). `old` and `new` carry the two
versions' totals as the statement file writes them (decimal strings with 3, 6 and 4 decimals).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.events import ID_PATTERN, Strict

EVENT_TYPE = "cpn.restatement.v1"
HOUR_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:00:00Z$"
HEX64 = r"^[0-9a-f]{64}$"


class StatementTotals(Strict):
    """One version of an hour's statement: its totals and its hash."""

    version: Annotated[int, Field(ge=1)]
    entries: Annotated[int, Field(ge=0)]
    device_seconds: Annotated[str, Field(pattern=r"^-?\d+\.\d{3}$")]
    energy_kwh: Annotated[str, Field(pattern=r"^-?\d+\.\d{6}$")]
    amount_cny: Annotated[str, Field(pattern=r"^-?\d+\.\d{4}$")]
    hash: Annotated[str, Field(pattern=HEX64)]


class Restatement(Strict):
    """`data` of a cpn.restatement.v1 event."""

    dc_id: Annotated[str, Field(pattern=ID_PATTERN)]
    hour: Annotated[str, Field(pattern=HOUR_PATTERN)]
    version: Annotated[int, Field(ge=2)]
    old: StatementTotals
    new: StatementTotals
