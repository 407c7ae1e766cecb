"""The GPU path's rules, checked without a GPU (issue 20): how many API processes serve and which GPU each
drives, the GPU memory given back after warm-up, and device decoding's own drained stream per thread.
What only a GPU can show is in bench/gpu_check.sh."""

from __future__ import annotations

import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bench import gpu_workers
from service import device_decode
from service.config import ConfigError
from service.model import torch_runtime
from service.model.runtime import RuntimeChoice
from service.preprocessing import preprocess
from service.workers import (
    FRONT_END_CORES_PER_PROCESS,
    MAX_WORKERS_PER_GPU,
    checked_workers,
    default_workers,
    device_index,
    front_end_ceiling,
    workers_on_each_gpu,
    workers_per_gpu,
)
from tests import images

# --- workers per GPU and the worker -> device mapping -------------------------------------------------


# (instance type, vCPUs, GPUs) of infra/instance_types.py's GPU types -> API processes per GPU by default
TYPES = [
    ("g4dn.xlarge", 4, 1, 3), ("g4dn.2xlarge", 8, 1, 4), ("g5.xlarge", 4, 1, 3), ("g5.2xlarge", 8, 1, 4),
    ("g6.xlarge", 4, 1, 3), ("g6e.xlarge", 4, 1, 3), ("p4d.24xlarge", 96, 8, 4), ("p5.48xlarge", 192, 8, 4),
]  # fmt: skip


@pytest.mark.parametrize(("name", "vcpus", "gpus", "per_gpu"), TYPES)
def test_workers_per_gpu_follow_the_cores_one_process_keeps_busy(
    name: str, vcpus: int, gpus: int, per_gpu: int
) -> None:
    assert FRONT_END_CORES_PER_PROCESS == 1.3  # measured (docs/performance.md, "Workers per GPU")
    assert workers_per_gpu(vcpus, gpus) == per_gpu <= MAX_WORKERS_PER_GPU
    assert default_workers(gpus, vcpus) == gpus * per_gpu
    assert workers_on_each_gpu(gpus * per_gpu, gpus) == [per_gpu] * gpus  # every GPU used, evenly


def test_worker_count_edges() -> None:
    assert default_workers(0, 64) == 1  # no GPU: one process, its model threads on every core
    assert [workers_per_gpu(vcpus, 1) for vcpus in (1, 2, 3, 4, 5, 6, 96)] == [1, 2, 2, 3, 4, 4, 4]
    assert workers_per_gpu(4, 8) == 1  # fewer vCPUs than GPUs: still one per GPU
    with pytest.raises(ValueError):
        workers_per_gpu(4, 0)


def test_front_end_ceiling_counts_the_processes_not_only_the_cores() -> None:
    # 3.6 CPU-ms per image outside the model (bench.frontend): 3 processes x 1.3 cores of 4 on a g4dn.xlarge
    assert front_end_ceiling(4, 1, 3.6) == pytest.approx(3 * 1.3 * 1000 / 3.6)
    assert front_end_ceiling(96, 8, 3.6) == pytest.approx(32 * 1.3 * 1000 / 3.6)  # p4d: 32 processes, 42 cores
    assert front_end_ceiling(2, 1, 3.6) == pytest.approx(2 * 1000 / 3.6)  # never more than the vCPUs


@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_workers_are_pinned_round_robin_over_the_visible_gpus(gpus: int) -> None:
    # BentoML's worker_index is circus's worker id: 1, 2, ... (_bentoml_impl/worker/service.py)
    assert [device_index(index, gpus) for index in range(1, gpus + 1)] == list(range(gpus))  # one each
    assert workers_on_each_gpu(gpus, gpus) == [1] * gpus
    # More workers than GPUs: round-robin, never more than one apart, every GPU used.
    crowded = [device_index(index, gpus) for index in range(1, 2 * gpus + 2)]
    assert crowded == [*range(gpus), *range(gpus), 0]
    assert workers_on_each_gpu(2 * gpus + 1, gpus) == [3] + [2] * (gpus - 1)
    for vcpus in (4, 8, 12 * gpus):  # the default count of every GPU type: each GPU gets the same number
        counts = workers_on_each_gpu(default_workers(gpus, vcpus), gpus)
        assert len(set(counts)) == 1 and counts[0] == workers_per_gpu(vcpus, gpus)
    assert device_index(None, gpus) == 0  # outside `bentoml serve`: one process, the first GPU


def test_device_index_refuses_what_cannot_be() -> None:
    with pytest.raises(ValueError, match="no visible GPU"):
        device_index(1, 0)
    with pytest.raises(ValueError, match="start at 1"):
        device_index(0, 4)


@pytest.mark.parametrize("gpus", [1, 4, 8])
def test_workers_per_gpu_are_capped(gpus: int) -> None:
    assert checked_workers(gpus * MAX_WORKERS_PER_GPU, gpus) == gpus * MAX_WORKERS_PER_GPU
    with pytest.raises(ConfigError, match="RESNET18_API_WORKERS"):
        checked_workers(gpus * MAX_WORKERS_PER_GPU + 1, gpus)
    assert checked_workers(64, 0) == 64  # no cap without a GPU (the CPU runtime's own choice)


def test_each_worker_builds_its_model_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoml

    from service import model_service

    monkeypatch.setattr(model_service, "visible_gpus", lambda: 4)
    on_gpu = RuntimeChoice("torch", "cuda", "fp16")
    devices = []
    for index in range(1, 9):
        monkeypatch.setattr(bentoml.server_context, "worker_index", index)
        devices.append(model_service.worker_device(on_gpu))
    assert devices == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"] * 2
    assert model_service.worker_device(RuntimeChoice("openvino", "cpu", "fp32")) == "cpu"


# --- GPU memory after warm-up --------------------------------------------------------------------------


class FakeCuda:
    """torch.cuda's memory calls, recorded: a caching allocator that holds 900 MiB after warm-up, 40 live."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reserved = 900 * torch_runtime.MIB

    def synchronize(self, device: Any = None) -> None:
        self.calls.append(f"synchronize {device}")

    def empty_cache(self) -> None:
        self.calls.append("empty_cache")
        self.reserved = 64 * torch_runtime.MIB

    def memory_reserved(self, device: Any = None) -> int:
        self.calls.append(f"memory_reserved {device}")
        return self.reserved

    def memory_allocated(self, device: Any = None) -> int:
        return 40 * torch_runtime.MIB


def test_warm_up_on_a_gpu_gives_the_allocator_cache_back_and_reports_what_stays(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    fake = FakeCuda()
    for name in ("synchronize", "empty_cache", "memory_reserved", "memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    monkeypatch.setattr(torch_runtime, "process_gpu_mib", lambda device: 512.0)
    forwarded: list[int] = []
    classifier = types.SimpleNamespace(
        device=torch.device("cuda:1"), gpu_memory=None, forward=lambda batch: forwarded.append(len(batch))
    )
    with caplog.at_level("INFO", logger="bentoml.service.model.torch_runtime"):
        sizes = torch_runtime.TorchClassifier.warm_up(classifier, 4)  # type: ignore[arg-type]
    assert sizes == forwarded == [1, 2, 3, 4]  # every batch size first, then the release
    assert fake.calls == ["synchronize cuda:1", "memory_reserved cuda:1", "empty_cache", "memory_reserved cuda:1"]
    assert classifier.gpu_memory == {
        "allocated_mib": 40.0,
        "reserved_before_release_mib": 900.0,
        "reserved_mib": 64.0,
        "process_mib": 512.0,
    }
    assert "reserved 64 MiB (900 before empty_cache), process total 512 MiB" in caplog.text
    # bench/gpu_check.sh reads the same figures back from each worker's log line.
    log = tmp_path / "serve.log"
    log.write_text(caplog.text)
    assert gpu_workers.allocator_lines(log) == [{"device": "cuda:1", **classifier.gpu_memory}]


def test_an_idle_worker_gives_its_cache_back_once_per_idle_spell(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(torch_runtime.time, "monotonic", lambda: now[0])
    released: list[str] = []
    monkeypatch.setattr(
        torch_runtime, "release_cached_memory", lambda device, when: released.append(f"{device} {when}") or {}
    )
    classifier = types.SimpleNamespace(device=torch.device("cuda:2"), gpu_memory=None, last_used=0.0, released_at=0.0)
    release = types.MethodType(torch_runtime.TorchClassifier.release_if_idle, classifier)
    assert not release(60)  # no batch since warm-up's own release: nothing to give back
    classifier.last_used = now[0]  # a batch (TorchClassifier.__call__)
    now[0] += 59
    assert not release(60)  # not idle long enough
    now[0] += 1
    assert release(60) and released == ["cuda:2 after 60 s idle"]
    now[0] += 600
    assert not release(60) and len(released) == 1  # once per idle spell
    classifier.device = torch.device("cpu")
    classifier.last_used = now[0] - 3600
    assert not release(60)  # nothing to release on a CPU


def test_without_nvml_the_process_total_is_unknown_not_an_error() -> None:
    assert torch_runtime.process_gpu_mib(torch.device("cuda:0")) is None  # no GPU (or no NVML) here


def test_warm_up_on_a_cpu_releases_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: pytest.fail("empty_cache on a CPU"))
    classifier = types.SimpleNamespace(device=torch.device("cpu"), gpu_memory=None, forward=lambda batch: None)
    assert torch_runtime.TorchClassifier.warm_up(classifier, 32) == [1, 32]  # type: ignore[arg-type]
    assert classifier.gpu_memory is None


# --- device decoding: a drained stream of its own per thread (pytorch/vision#9606) ---------------------


class FakeStreams:
    """torch.cuda.Stream and torch.cuda.stream, recorded; the decoder records which stream was current."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.current: str | None = None
        self.made = 0
        self.devices: list[str] = []  # set_device calls: each decoding thread makes the worker's GPU current
        outer = self

        class Stream:
            def __init__(self, device: torch.device) -> None:
                outer.made += 1
                self.name = f"s{outer.made}@{device}"

            def synchronize(self) -> None:
                outer.events.append(f"synchronize {self.name}")

        class StreamContext:
            def __init__(self, stream: Stream) -> None:
                self.stream = stream

            def __enter__(self) -> None:
                outer.current = self.stream.name

            def __exit__(self, *exc: object) -> None:
                outer.current = None

        self.Stream, self.stream = Stream, StreamContext

    def set_device(self, device: torch.device) -> None:
        self.devices.append(str(device))


def test_device_decoding_drains_its_own_stream_before_the_decoder_allocates(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeStreams()
    monkeypatch.setattr(torch.cuda, "Stream", fake.Stream)
    monkeypatch.setattr(torch.cuda, "stream", fake.stream)
    monkeypatch.setattr(torch.cuda, "set_device", fake.set_device)
    real_decode = device_decode.decode_jpeg

    def decode_jpeg(encoded: list[torch.Tensor], mode: Any, device: torch.device) -> list[torch.Tensor]:
        assert device == torch.device("cuda:0")
        fake.events.append(f"decode on {fake.current}")
        return real_decode(encoded, mode=mode, device="cpu")  # type: ignore[return-value]

    monkeypatch.setattr(device_decode, "decode_jpeg", decode_jpeg)
    datas = [images.jpeg(500, 375), images.jpeg(375, 500, seed=3)]
    gpu = torch.device("cuda:0")

    crops = device_decode.decode_batch(datas, gpu)
    # Back on the host, as the CPU path's crops, within the one grey level of the resize implementations.
    assert crops.device.type == "cpu" and crops.shape == (2, 3, 224, 224)
    expected = torch.from_numpy(np.stack([preprocess(data, 50_000_000) for data in datas]))
    assert (crops.int() - expected.int()).abs().max() <= 1
    device_decode.decode_batch(datas, gpu)  # the same thread: the same stream, drained again
    assert fake.events == ["synchronize s1@cuda:0", "decode on s1@cuda:0"] * 2
    assert fake.current is None
    assert fake.devices == ["cuda:0"]  # once per thread, with its stream

    other: list[str] = []
    thread = threading.Thread(target=lambda: other.append(str(device_decode.decode_batch(datas, gpu).shape)))
    thread.start()
    thread.join()
    assert other and fake.made == 2  # another decoding thread: a stream of its own
    assert fake.events[-2:] == ["synchronize s2@cuda:0", "decode on s2@cuda:0"]
    assert fake.devices == ["cuda:0", "cuda:0"]


def test_device_decoding_on_the_cpu_touches_no_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a: pytest.fail("a CUDA stream on the CPU path"))
    crops = device_decode.decode_batch([images.jpeg()], torch.device("cpu"))
    assert crops.shape == (1, 3, 224, 224) and crops.device.type == "cpu"
