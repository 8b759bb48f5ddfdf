"""Accelerators per Kubernetes node and those allocated by pods, as pools. I/O: the Kubernetes API.

Through the official `kubernetes` client (extra `agent-k8s`): `list_node` and the pods not yet
finished; `pools_of` is pure (tested on recorded API responses deserialised by the client).

Extended resources: `nvidia.com/gpu` (whole GPUs; model from the GPU feature discovery label
`nvidia.com/gpu.product`), `nvidia.com/mig-<profile>` (MIG instances of that parent, derived
models with their own peak), `huawei.com/Ascend910`, `huawei.com/Ascend310P`... (model from the
label `node.kubernetes.io/npu.chip.name`), or the configured `device_models` per resource.
Per model: devices_total = the nodes' capacity; online = the allocatable devices of Ready,
schedulable nodes; allocated = what the pods on those nodes request (limits when no request),
at most online. A resource whose model cannot be named exactly is a warning, not a guess.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agents.collectors import Collected, CollectorError, invalid
from agents.collectors.identify import Identified, identify_ascend, identify_nvidia
from agents.records import build
from schemas.events import Capacity

GPU = "nvidia.com/gpu"
MIG_PREFIX = "nvidia.com/mig-"
ASCEND_PREFIX = "huawei.com/Ascend"
PRODUCT_LABEL = "nvidia.com/gpu.product"
NPU_CHIP_LABEL = "node.kubernetes.io/npu.chip.name"


def _count(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _device_resources(resources: Mapping[str, Any] | None) -> dict[str, int]:
    return {k: _count(v) for k, v in (resources or {}).items()
            if k == GPU or k.startswith((MIG_PREFIX, ASCEND_PREFIX))}


def _ready(node: Any) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def model_of(resource: str, labels: Mapping[str, str], configured: Mapping[str, str]) -> Identified:
    """The device model of one extended resource on a node, or a CollectorError naming it."""
    if resource in configured:
        return Identified(configured[resource])
    if resource == GPU or resource.startswith(MIG_PREFIX):
        product = labels.get(PRODUCT_LABEL)
        if not product:
            raise CollectorError(f"{resource}: the node has no {PRODUCT_LABEL} label (GPU feature "
                                 "discovery); set device_models")
        parent = product.split("-MIG-")[0]
        if resource == GPU:
            return identify_nvidia(product)
        return identify_nvidia(parent, mig_profile=resource.removeprefix(MIG_PREFIX))
    chip = labels.get(NPU_CHIP_LABEL)
    if not chip:
        raise CollectorError(f"{resource}: the node has no {NPU_CHIP_LABEL} label; set device_models")
    return identify_ascend(chip)


def pools_of(nodes: Any, pods: Any, configured: Mapping[str, str] | None = None,
             ) -> tuple[dict[str, tuple[Identified, int, int, int]], list[str]]:
    """Per device model: (model, total, online, allocated) over the nodes, and warnings. Pure.

    `nodes` is a V1NodeList, `pods` a V1PodList (as the client returns or deserialises them).
    """
    configured = configured or {}
    warnings: list[str] = []
    requested: dict[tuple[str, str], int] = defaultdict(int)  # (node, resource) -> devices
    for pod in pods.items or []:
        if pod.spec is None or not pod.spec.node_name:
            continue
        if pod.status is not None and pod.status.phase in ("Succeeded", "Failed"):
            continue
        for container in pod.spec.containers or []:
            res = container.resources
            want = _device_resources(res.requests if res else None) or _device_resources(
                res.limits if res else None)
            for resource, n in want.items():
                requested[(pod.spec.node_name, resource)] += n
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    models: dict[str, Identified] = {}
    for node in nodes.items or []:
        name = node.metadata.name
        labels = node.metadata.labels or {}
        capacity = _device_resources(node.status.capacity if node.status else None)
        allocatable = _device_resources(node.status.allocatable if node.status else None)
        ready = _ready(node)
        for resource, total in capacity.items():
            if total <= 0:
                continue
            try:
                found = model_of(resource, labels, configured)
            except CollectorError as exc:
                warnings.append(f"node {name}: {exc}; skipped")
                continue
            models[found.device_model] = found
            online = allocatable.get(resource, 0) if ready else 0
            figures = totals[found.device_model]
            figures[0] += total
            figures[1] += online
            figures[2] += min(online, requested.get((name, resource), 0))
    return {m: (models[m], *f) for m, f in totals.items()}, warnings  # type: ignore[misc]


class KubernetesCollector:
    """Capacity of a cluster's accelerators, one pool per device model."""

    name = "kubernetes"

    def __init__(self, dc_id: str, pool_id: str, interval_s: int, *, kubeconfig: Path | None = None,
                 context: str | None = None, device_models: Mapping[str, str] | None = None,
                 timeout_s: float = 10.0) -> None:
        self.dc_id, self.pool_id = dc_id, pool_id
        self.kubeconfig, self.context = kubeconfig, context
        self.device_models = dict(device_models or {})
        self.timeout_s = timeout_s
        self.interval_s = float(interval_s)
        self._interval = interval_s
        self._api: Any = None

    def _core(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            try:
                if self.kubeconfig is None and not self.context:
                    try:
                        config.load_incluster_config()  # type: ignore[no-untyped-call]
                    except config.ConfigException:
                        config.load_kube_config(context=self.context)  # type: ignore[no-untyped-call]
                else:
                    config.load_kube_config(  # type: ignore[no-untyped-call]
                        config_file=str(self.kubeconfig) if self.kubeconfig else None, context=self.context)
            except (config.ConfigException, OSError, TypeError, ValueError) as exc:
                raise CollectorError(f"no Kubernetes configuration: {exc}", collector=self.name) from None
            self._api = client.CoreV1Api()
        return self._api

    def collect(self, now: datetime) -> Collected:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        api = self._core()
        try:
            nodes = api.list_node(_request_timeout=self.timeout_s)
            pods = api.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                _request_timeout=self.timeout_s)
        except ApiException as exc:
            raise CollectorError(f"Kubernetes API answered {exc.status} {exc.reason}",
                                 collector=self.name) from None
        except (HTTPError, OSError) as exc:
            raise CollectorError(f"cannot reach the Kubernetes API: {exc}", collector=self.name) from None
        return self.events(nodes, pods, now)

    def events(self, nodes: Any, pods: Any, now: datetime) -> Collected:
        """Capacity events from a V1NodeList and a V1PodList. Pure."""
        pools, warnings = pools_of(nodes, pods, self.device_models)
        if not pools:
            raise CollectorError(warnings[0] if warnings else "no node offers GPUs or NPUs",
                                 collector=self.name)
        out = []
        for i, (model_id, (model, total, online, allocated)) in enumerate(sorted(pools.items())):
            pool = self.pool_id if len(pools) == 1 else f"{self.pool_id}-{i + 1}"
            try:
                data = Capacity(dc_id=self.dc_id, pool_id=pool, device_model=model_id,
                                devices_total=total, devices_online=min(online, total),
                                devices_allocated=allocated, busy_ratio=None,
                                interval_s=self._interval, peak_tflops_per_device=model.peak)
            except ValidationError as exc:
                warnings.append(f"pool {pool}: {invalid(exc)}; skipped")
                continue
            out.append(build("cpn.capacity.v1", now, data, subject=pool))
        return Collected(out, warnings)
