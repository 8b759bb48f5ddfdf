"""The prometheus (dcgm-exporter, npu-exporter) and kubernetes collectors on recorded responses."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from agents.collectors import CollectorError
from agents.collectors.identify import identify_nvidia
from agents.collectors.kubernetes import KubernetesCollector
from agents.collectors.prometheus import PrometheusCollector, devices_of
from agents.records import serialise
from schemas.catalogue import load_catalogue
from schemas.decode import decode
from schemas.events import CapacityEvent

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = datetime(2026, 11, 20, 2, 47, tzinfo=UTC)


def exposition(name: str) -> str:
    return (FIXTURES / "exporters" / name).read_text()


def pools(result_events: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    out = {}
    for event in result_events:
        decoded = decode(serialise(event), now=NOW, key="dc-1")
        assert isinstance(decoded, CapacityEvent), decoded
        out[decoded.data.device_model] = event["data"]
    return out


def test_dcgm_exporter_gpus_pods_and_busy() -> None:
    devices, warnings = devices_of(exposition("dcgm-exporter-4xh100-k8s.prom"))
    assert len(devices) == 4 and not warnings
    assert devices[0].total_mib == 71234 + 10325 and devices[0].power_w == 689.4
    result = PrometheusCollector("dc-1", "gpu", 15, []).events(devices, NOW)
    (data,) = pools(result.events).values()
    assert data["device_model"] == "nvidia-h100-sxm5-80gb"
    # two GPUs held by a pod, one busy without a pod, one idle
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (4, 4, 3)
    assert data["busy_ratio"] == pytest.approx((97 + 95 + 0 + 88) / 4 / 100)


def test_dcgm_exporter_mig_instances_are_derived_models() -> None:
    devices, _ = devices_of(exposition("dcgm-exporter-a100-mig.prom"))
    result = PrometheusCollector("dc-1", "mig", 15, []).events(devices, NOW)
    by_model = pools(result.events)
    two = by_model["nvidia-a100-sxm4-80gb-mig-2g.20gb"]
    one = by_model["nvidia-a100-sxm4-80gb-mig-1g.10gb"]
    assert (two["devices_total"], two["devices_allocated"]) == (3, 2)  # a pod, and 40 % busy
    assert (one["devices_total"], one["devices_allocated"]) == (1, 0)
    a100 = load_catalogue().devices["nvidia-a100-sxm4-80gb"]
    assert two["peak_tflops_per_device"]["fp16"] == pytest.approx(a100.fp16 * 2 / 7, abs=1e-3)
    assert one["peak_tflops_per_device"]["fp16"] == pytest.approx(a100.fp16 / 7, abs=1e-3)


def test_npu_exporter_chips_health_and_pods() -> None:
    devices, _ = devices_of(exposition("npu-exporter-8x910b2.prom"))
    (data,) = pools(PrometheusCollector("dc-1", "npu", 15, []).events(devices, NOW).events).values()
    assert data["device_model"] == "huawei-ascend-910b2"
    assert (data["devices_total"], data["devices_online"], data["devices_allocated"]) == (8, 7, 3)
    assert data["busy_ratio"] == pytest.approx((92 + 92 + 35) / 7 / 100, abs=1e-4)


@pytest.mark.parametrize(("model_name", "model"), [
    ("910A-Ascend-V1", "huawei-ascend-910"), ("Ascend910B3", "huawei-ascend-910b3"),
    ("910B4", "huawei-ascend-910b4"), ("Ascend310P3", "huawei-ascend-310p")])
def test_npu_exporter_model_names(model_name: str, model: str) -> None:
    text = f'npu_chip_info_utilization{{id="0",model_name="{model_name}"}} 5\n'
    devices, _ = devices_of(text)
    assert devices[0].identify().device_model == model


def test_an_unknown_model_is_skipped_with_a_warning_and_a_broken_exposition_keeps_what_it_read() -> None:
    text = exposition("dcgm-exporter-4xh100-k8s.prom").replace(
        'gpu="3",UUID="GPU-2b0d1c8e-0001-4000-8000-000000000004",pci_bus_id="00000000:1B:00.0",device="nvidia3",'
        'modelName="NVIDIA H100 80GB HBM3"',
        'gpu="3",UUID="GPU-2b0d1c8e-0001-4000-8000-000000000004",pci_bus_id="00000000:1B:00.0",device="nvidia3",'
        'modelName="NVIDIA H100L-2-24C"')
    devices, _ = devices_of(text + "this is { not exposition\n")
    result = PrometheusCollector("dc-1", "gpu", 15, []).events(devices, NOW)
    assert result.events[0]["data"]["devices_total"] == 3
    assert any("H100L-2-24C" in w for w in result.warnings)
    _, warnings = devices_of(text + "this is { not exposition\n", "http://x/metrics")
    assert warnings and warnings[0].startswith("http://x/metrics: unreadable exposition after 4 devices")


@pytest.fixture
def exporters() -> object:
    handler = partial(SimpleHTTPRequestHandler, directory=str(FIXTURES / "exporters"))
    handler.log_message = lambda *_a, **_k: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_the_collector_scrapes_several_exporters_over_http(exporters: str) -> None:
    urls = [f"{exporters}/dcgm-exporter-4xh100-k8s.prom", f"{exporters}/npu-exporter-8x910b2.prom",
            f"{exporters}/missing.prom"]
    result = PrometheusCollector("dc-1", "acc", 15, urls).collect(NOW)
    by_model = pools(result.events)
    assert set(by_model) == {"nvidia-h100-sxm5-80gb", "huawei-ascend-910b2"}
    assert {d["pool_id"] for d in by_model.values()} == {"acc-1", "acc-2"}
    assert result.warnings == [f"{exporters}/missing.prom answered HTTP 404"]
    with pytest.raises(CollectorError, match=r"prometheus: cannot scrape http://127\.0\.0\.1:1/metrics"):
        PrometheusCollector("dc-1", "acc", 15, ["http://127.0.0.1:1/metrics"], timeout_s=2).collect(NOW)


# -- kubernetes --------------------------------------------------------------------------------


def deserialise(text: str, kind: str) -> object:
    """What the client makes of an API response body (the same call its API methods make)."""
    from kubernetes import client

    try:
        return client.ApiClient().deserialize(text, kind, "application/json")
    except TypeError:  # clients before 35 take the response object, not its text
        return client.ApiClient().deserialize(SimpleNamespace(data=text), kind)


def recorded(name: str, kind: str) -> object:
    return deserialise((FIXTURES / "kubernetes" / name).read_text(), kind)


def test_kubernetes_devices_per_node_and_allocated_by_pods() -> None:
    nodes, pods = recorded("nodes.json", "V1NodeList"), recorded("pods.json", "V1PodList")
    result = KubernetesCollector("dc-1", "k8s", 15).events(nodes, pods, NOW)
    by_model = pools(result.events)
    h100 = by_model["nvidia-h100-sxm5-80gb"]
    # 16 GPUs; the cordoned node's 8 are not online; 4 requested + 2 by limit (the finished pod is not)
    assert (h100["devices_total"], h100["devices_online"], h100["devices_allocated"]) == (16, 8, 6)
    mig = by_model["nvidia-a100-sxm4-80gb-mig-1g.10gb"]
    assert (mig["devices_total"], mig["devices_online"], mig["devices_allocated"]) == (7, 7, 3)
    assert mig["peak_tflops_per_device"] == identify_nvidia(
        "NVIDIA A100-SXM4-80GB", mig_profile="1g.10gb").peak.model_dump()  # type: ignore[union-attr]
    npu = by_model["huawei-ascend-910b3"]
    assert (npu["devices_total"], npu["devices_online"], npu["devices_allocated"]) == (16, 8, 4)
    assert not result.warnings


def test_kubernetes_unknown_product_is_a_warning_and_configured_models_win() -> None:
    raw = json.loads((FIXTURES / "kubernetes" / "nodes.json").read_text())
    raw["items"][0]["metadata"]["labels"]["nvidia.com/gpu.product"] = "NVIDIA-B200"
    for item in raw["items"][3:5]:
        del item["metadata"]["labels"]["node.kubernetes.io/npu.chip.name"]
    nodes = deserialise(json.dumps(raw), "V1NodeList")
    pods = recorded("pods.json", "V1PodList")
    result = KubernetesCollector("dc-1", "k8s", 15).events(nodes, pods, NOW)
    assert any("gpu-node-01" in w and "NVIDIA-B200" in w for w in result.warnings)
    assert any("npu-node-01" in w and "npu.chip.name" in w for w in result.warnings)
    assert pools(result.events)["nvidia-h100-sxm5-80gb"]["devices_total"] == 8
    configured = KubernetesCollector("dc-1", "k8s", 15, device_models={
        "huawei.com/Ascend910": "huawei-ascend-910b2"}).events(nodes, pods, NOW)
    assert pools(configured.events)["huawei-ascend-910b2"]["devices_total"] == 16


def test_kubernetes_unreachable_api_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
""")
    collector = KubernetesCollector("dc-1", "k8s", 15, kubeconfig=kubeconfig, timeout_s=2)
    with pytest.raises(CollectorError, match="kubernetes: cannot reach the Kubernetes API") as info:
        collector.collect(NOW)
    assert "\n" not in str(info.value)
