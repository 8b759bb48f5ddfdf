"""attach_alerts: put the alert engine into a worker (observer, evaluation timer, senders). Wiring.

Called by streams.runtime.prepare() when SURPLUS_ALERT_RULES names a rules file. The handler
calls `engine.observe` after each batch is durably written (in-memory only, no I/O in the batch
loop); a faust timer evaluates every `evaluation_interval_s` (which is also what notices a
silent DC when no batch comes); sender tasks deliver; shutdown keeps what is still queued.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.alerts.config import load_rules
from streams.alerts.engine import Engine, engine_from
from surplus.errors import UserError

log = logging.getLogger(__name__)


def attach_alerts(app: Any, handler: Any, settings: Any, client: Any, database: str) -> Engine:
    """Load the rules and the stored alert state; wire the engine into `app` and `handler`."""
    if settings.alert_rules is None:
        raise UserError("attach_alerts needs SURPLUS_ALERT_RULES (an alert rules TOML file)")
    rules = load_rules(settings.alert_rules)
    engine = engine_from(rules, client, database)
    try:
        engine.load()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"alerts: cannot load alert state from ClickHouse ({first}); "
                        "run `surplus db migrate`") from None
    handler.observers.append(engine.observe)

    @app.task  # type: ignore[untyped-decorator]
    async def _alerts_senders() -> None:
        engine.start()

    @app.timer(rules.engine.evaluation_interval_s, name="alerts-evaluate")  # type: ignore[untyped-decorator]
    async def _alerts_evaluate() -> None:
        try:
            await engine.tick()
        except Exception:  # an alerting fault must not stop the data pipeline
            log.exception("alerts: evaluation failed; trying again at the next tick")

    @app.on_before_shutdown.connect  # type: ignore[untyped-decorator]
    async def _alerts_stop(sender: Any, **kwargs: Any) -> None:
        await engine.close()

    log.info("alerts: %d rules, %d receivers, evaluated every %g s", len(rules.rule),
             len(rules.receiver), rules.engine.evaluation_interval_s)
    return engine
