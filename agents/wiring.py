"""Builds the agent's parts from settings: collectors, spool, producer and outbox. Wiring.

The producer module (the only confluent-kafka importer) is imported here lazily, so the rest of
agents/ (the simulator, the spool, the parsers) is usable without a broker or librdkafka.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from agents.collectors import Collector
from agents.collectors.simulator import SimulatorCollector
from agents.fleet import SimDC
from agents.outbox import Outbox
from agents.settings import AgentSettings, Intervals, KafkaSettings, SpoolSettings
from agents.spool import Spool, SpoolBusy
from agents.watch import BrokerWatch
from surplus.errors import UserError
from surplus.logs import kafka_service

if TYPE_CHECKING:
    from agents.publisher import Signer


def build_spool(spool: SpoolSettings) -> Spool:
    try:
        return Spool(spool.path, max_bytes=spool.max_bytes, segment_bytes=spool.segment_bytes,
                     fsync=spool.fsync, fsync_interval_s=spool.fsync_interval_ms / 1000)
    except SpoolBusy as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot open the spool in {spool.path}: {exc.strerror or exc}") from None


def build_outbox(kafka: KafkaSettings, spool: SpoolSettings, *, signing_key_file: Path | None = None,
                 dc_id: str = "", client_id: str | None = None, signer: Signer | None = None) -> Outbox:
    """A spool and an idempotent Kafka producer wired together (creating topics if asked)."""
    from agents.publisher import KafkaPublisher, ensure_topics, make_signer

    if signing_key_file is not None:
        signer = make_signer(signing_key_file, dc_id)
    if kafka.create_topics:
        ensure_topics(kafka)
    name = client_id or f"surplus-agent-{dc_id}"
    tally = None
    if spool.tally:
        from agents.tally import open_tally

        tally = open_tally(spool.path)
    watch = BrokerWatch(kafka_service(kafka.bootstrap))
    return Outbox(build_spool(spool),
                  lambda on_delivery: KafkaPublisher(kafka, on_delivery=on_delivery,
                                                     client_id=name, signer=signer, watch=watch),
                  max_in_flight=kafka.max_in_flight_events, tally=tally, watch=watch)


def simulator_for(d: SimDC, intervals: Intervals, start: datetime) -> SimulatorCollector:
    return SimulatorCollector(d.dc, d.sim, intervals, start=start)


def build_collectors(settings: AgentSettings, *, start: datetime) -> list[Collector]:
    """The enabled collectors, in a fixed order (agents.settings.COLLECTORS)."""
    c, i, dc_id = settings.collectors, settings.intervals, settings.dc.dc_id
    out: list[Collector] = []
    if c.simulator.enabled:
        out.append(SimulatorCollector(settings.dc, c.simulator, i, start=start))
    if c.linux.enabled:
        from agents.collectors.linux import LinuxCollector

        out.append(LinuxCollector(dc_id, c.linux.pool_id, c.linux.device_model, i.capacity_s,
                                  proc_stat=c.linux.proc_stat))
    if c.nvidia.enabled:
        from agents.collectors.nvidia import NvidiaCollector

        out.append(NvidiaCollector(dc_id, c.nvidia.pool_id, i.capacity_s,
                                   device_model=c.nvidia.device_model,
                                   command=c.nvidia.command or None, timeout_s=c.nvidia.timeout_s))
    if c.ascend.enabled:
        from agents.collectors.ascend import AscendCollector

        out.append(AscendCollector(dc_id, c.ascend.pool_id, i.capacity_s,
                                   device_model=c.ascend.device_model,
                                   command=c.ascend.command or None, timeout_s=c.ascend.timeout_s))
    if c.slurm.enabled:
        from agents.collectors.slurm import SlurmCollector

        out.append(SlurmCollector(dc_id, c.slurm, i.jobs_s,
                                  state_path=settings.spool.path / "slurm-state.json"))
    if c.prometheus.enabled:
        from agents.collectors.prometheus import PrometheusCollector

        out.append(PrometheusCollector(dc_id, c.prometheus.pool_id, i.capacity_s, c.prometheus.urls,
                                       device_model=c.prometheus.device_model,
                                       timeout_s=c.prometheus.timeout_s))
    if c.kubernetes.enabled:
        try:
            import kubernetes  # noqa: F401

            from agents.collectors.kubernetes import KubernetesCollector
        except ModuleNotFoundError:
            raise UserError("collectors.kubernetes needs the official client: "
                            "pip install 'surplus[agent-k8s]'") from None
        k = c.kubernetes
        out.append(KubernetesCollector(dc_id, k.pool_id, i.capacity_s, kubeconfig=k.kubeconfig,
                                       context=k.context, device_models=k.device_models,
                                       timeout_s=k.timeout_s))
    return out
