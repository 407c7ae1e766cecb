"""The two runtimes and INT8: which one runs, the INT8 import and its refusals, and served answers against
fp32 on the same images, through the real import command and a real `bentoml serve`.

The weights are the confident stand-in (container/stand_in_weights.py --confident): answers that look
trained, so top-1 agreement and score differences mean what they would with ImageNet weights."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from bench.sample_images import varied_photo
from container import stand_in_weights
from service.model.quantize import MIN_IMAGES, QuantizationError, read_photos
from service.model.runtime import RuntimeChoice, SettingsConflict, choose
from tests.server import REPO, Server, bentoml_build, bentoml_serve
from tests.test_api import classify, reference_probabilities
from tests.test_startup import run_model_worker

CALIBRATION_PHOTOS = 200
SERVED_SEEDS = range(300, 332)  # photos neither the weights nor the calibration saw


def run_import(home: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.import_model", *arguments],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def write_photos(folder: Path, seeds: range) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (folder / f"photo-{seed:04d}.jpg").write_bytes(varied_photo(seed))
    return folder


def int8_versions(home: Path) -> list[Path]:
    return sorted(p for p in (home / "models" / "resnet18-int8").glob("*") if p.is_dir())


@pytest.fixture(scope="module")
def confident_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18-confident.pth"
    stand_in_weights.confident(str(path))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"), range(CALIBRATION_PHOTOS))


@pytest.fixture(scope="module")
def int8_store(tmp_path_factory: pytest.TempPathFactory, confident_weights: Path, photos: Path) -> Path:
    """A model store holding resnet18 and its INT8 version, both made by the real import command."""
    home = tmp_path_factory.mktemp("int8-home")
    # 0.9, not the default 0.95: the stand-in is more sensitive to rounding than a trained ResNet18
    # (container/stand_in_weights.py), and 50 held-out photos measure it to a few points.
    arguments = ["--quantize", "int8", "--calibration", str(photos), "--min-agreement", "0.9"]
    result = run_import(home, "--weights", str(confident_weights), *arguments)
    assert result.returncode == 0, result.stderr
    fp32_tag, int8_tag = result.stdout.split()
    assert fp32_tag.startswith("resnet18:") and int8_tag.startswith("resnet18-int8:")
    assert "INT8 against fp32: top-1 agreement" in result.stderr
    return home


def served_answers(server: Server) -> list[dict[str, Any]]:
    datas = [varied_photo(seed) for seed in SERVED_SEEDS]
    answers: list[dict[str, Any]] = []
    for start in range(0, len(datas), 16):
        response = classify(server, datas[start : start + 16])
        assert response.status_code == 200, response.text
        answers += response.json()
    return answers


def compare_with_fp32(answers: list[dict[str, Any]], weights: Path) -> tuple[float, float, float]:
    """(top-1 agreement, mean and max |p - p_fp32| of fp32's best class) against eager torchvision fp32."""
    model = stand_in_weights_model(weights)
    same, differences = 0, []
    for answer, seed in zip(answers, SERVED_SEEDS, strict=True):
        expected = reference_probabilities(model, varied_photo(seed))
        best = int(expected.argmax())
        same += answer["class_id"] == best
        served = {entry["class_id"]: entry["score"] for entry in answer["top_k"]}
        differences.append(abs(served.get(best, 0.0) - float(expected[best])))
    return same / len(answers), float(np.mean(differences)), float(np.max(differences))


def stand_in_weights_model(weights: Path) -> torch.nn.Module:
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def int8_server(int8_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"BENTOML_HOME": str(int8_store), "RESNET18_PRECISION": "int8"}
    with bentoml_serve(env, tmp_path_factory.mktemp("logs") / "int8.log") as running:
        yield running


# --- which runtime runs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "cuda", "bf16", "expected"),
    [
        (("auto", "auto", "auto"), False, True, ("openvino", "cpu", "bf16")),
        (("auto", "auto", "auto"), False, False, ("openvino", "cpu", "fp32")),
        (("auto", "auto", "auto"), True, True, ("torch", "cuda", "fp16")),
        (("auto", "auto", "int8"), True, True, ("openvino", "cpu", "int8")),
        (("auto", "cpu", "auto"), True, True, ("openvino", "cpu", "bf16")),
        (("torch", "auto", "auto"), False, True, ("torch", "cpu", "fp32")),
        (("torch", "cpu", "bf16"), False, False, ("torch", "cpu", "bf16")),
        (("openvino", "auto", "auto"), True, False, ("openvino", "cpu", "fp32")),
    ],
)
def test_runtime_choice(settings: tuple[str, str, str], cuda: bool, bf16: bool, expected: tuple[str, ...]) -> None:
    assert choose(*settings, cuda_available=cuda, native_bf16=bf16) == RuntimeChoice(*expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "bf16", "message"),
    [
        (("openvino", "cuda", "auto"), True, "openvino runs on the CPU only"),
        (("torch", "auto", "int8"), True, "int8 runs on OpenVINO"),
        (("auto", "cuda", "int8"), True, "int8 runs on OpenVINO"),
        (("openvino", "cpu", "fp16"), True, "fp16 needs a GPU"),
        (("openvino", "cpu", "bf16"), False, "native bf16"),
    ],
)
def test_settings_that_cannot_run_together_are_refused(
    settings: tuple[str, str, str], bf16: bool, message: str
) -> None:
    with pytest.raises(SettingsConflict, match=message):
        choose(*settings, cuda_available=True, native_bf16=bf16)


def test_cuda_asked_for_without_a_gpu_is_unusable_not_a_conflict() -> None:
    with pytest.raises(RuntimeError, match="CUDA is unusable") as raised:
        choose("torch", "cuda", "auto", cuda_available=False)
    assert not isinstance(raised.value, SettingsConflict)


# --- the INT8 import ----------------------------------------------------------------------------------


def test_int8_import_records_where_it_came_from_and_what_it_measured(int8_store: Path, photos: Path) -> None:
    (version,) = int8_versions(int8_store)
    info = yaml.safe_load((version / "model.yaml").read_text())
    metadata = info["metadata"]
    held_out = CALIBRATION_PHOTOS // 4
    assert (metadata["calibration_images"], metadata["held_out_images"]) == (CALIBRATION_PHOTOS - held_out, held_out)
    assert metadata["calibration_sha256"] == read_photos(photos).digest and len(metadata["source_sha256"]) == 64
    assert metadata["source_model"].startswith("resnet18:") and metadata["forced"] is False
    assert metadata["agreement"]["images"] == held_out
    assert metadata["agreement"]["rate"] >= metadata["min_agreement"] == 0.9
    assert metadata["nncf"] and metadata["openvino"]
    assert (version / "openvino" / "resnet18.xml").is_file() and (version / "openvino" / "resnet18.bin").is_file()


def test_too_few_or_unreadable_photos_are_refused(tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="does not exist"):
        read_photos(tmp_path / "missing")
    folder = write_photos(tmp_path / "few", range(MIN_IMAGES - 2))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image and not counted")
    with pytest.raises(QuantizationError, match=rf"{MIN_IMAGES - 2} readable photos .*\(1 unreadable\).*at least"):
        read_photos(folder)


def test_import_refusals_write_nothing(tmp_path: Path, int8_store: Path, confident_weights: Path) -> None:
    few = write_photos(tmp_path / "few", range(20))
    # No fp32 model to start from.
    empty = tmp_path / "empty-home"
    result = run_import(empty, "--quantize", "int8", "--calibration", str(few))
    assert result.returncode == 1 and "no fp32 model resnet18:latest" in result.stderr
    # Too few photos, and a folder that is not there: the store keeps its one INT8 version.
    for folder, message in ((few, "at least 100"), (tmp_path / "nowhere", "does not exist")):
        result = run_import(int8_store, "--quantize", "int8", "--calibration", str(folder))
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(int8_versions(int8_store)) == 1
    # An untrained model is not worth quantizing.
    untrained = tmp_path / "untrained-home"
    assert run_import(untrained, "--weights", "untrained").returncode == 0
    result = run_import(untrained, "--quantize", "int8", "--calibration", str(few))
    assert result.returncode == 1 and "untrained" in result.stderr
    # And --quantize needs photos.
    result = run_import(untrained, "--quantize", "int8")
    assert result.returncode == 2 and "--calibration" in result.stderr


def test_int8_below_the_agreement_threshold_is_refused_unless_forced(tmp_path: Path, photos: Path) -> None:
    """An impossible threshold stands in for a bad calibration: refused, then stored with --force."""
    home = tmp_path / "home"
    weights = tmp_path / "plain.pth"
    stand_in_weights.main(str(weights))
    assert run_import(home, "--weights", str(weights)).returncode == 0
    strict = ["--quantize", "int8", "--calibration", str(photos), "--min-agreement", "1.01"]
    result = run_import(home, *strict)
    assert result.returncode == 1 and "INT8 refused" in result.stderr and "--force" in result.stderr
    assert int8_versions(home) == []
    result = run_import(home, *strict, "--force")
    assert result.returncode == 0, result.stderr
    (version,) = int8_versions(home)
    metadata = yaml.safe_load((version / "model.yaml").read_text())["metadata"]
    assert metadata["forced"] is True and metadata["min_agreement"] == 1.01


# --- served -------------------------------------------------------------------------------------------


def test_int8_served_answers_agree_with_fp32(int8_server: Server, confident_weights: Path) -> None:
    answers = served_answers(int8_server)
    agreement, mean_difference, max_difference = compare_with_fp32(answers, confident_weights)
    # Measured here: 95-98% of photos with the same best class, mean |dp| ~0.03.
    assert agreement >= 0.9, agreement
    assert mean_difference <= 0.06 and max_difference <= 0.3, (mean_difference, max_difference)
    model = answers[0]["model"]
    assert (model["runtime"], model["device"], model["precision"]) == ("openvino", "cpu", "int8")
    assert model["tag"].startswith("resnet18-int8:") and model["weights"].startswith("INT8 (NNCF post-training)")
    assert model["trained"] is True and model["warning"] is None
    assert "ready on openvino (cpu, int8)" in int8_server.log_text()


@pytest.mark.parametrize(
    ("env", "runtime_precision", "min_agreement"),
    [
        ({}, None, 0.95),  # the CPU default: OpenVINO, bf16 where the CPU has it
        ({"RESNET18_RUNTIME": "torch", "RESNET18_PRECISION": "fp32"}, ("torch", "fp32"), 1.0),
    ],
)
def test_other_runtimes_served_from_the_same_store(
    tmp_path: Path,
    int8_store: Path,
    confident_weights: Path,
    env: dict[str, str],
    runtime_precision: tuple[str, str] | None,
    min_agreement: float,
) -> None:
    default = choose("auto", "auto", "auto", cuda_available=False)
    expected = runtime_precision or (default.runtime, default.precision)
    with bentoml_serve({"BENTOML_HOME": str(int8_store), **env}, tmp_path / "server.log") as server:
        answers = served_answers(server)
    agreement, mean_difference, _ = compare_with_fp32(answers, confident_weights)
    assert agreement >= min_agreement and mean_difference <= 0.03, (agreement, mean_difference)
    model = answers[0]["model"]
    assert (model["runtime"], model["precision"]) == expected and model["tag"].startswith("resnet18:")


def test_int8_without_an_int8_model_fails_startup_naming_the_fix(model_store: tuple[Path, str]) -> None:
    home, _ = model_store
    result = run_model_worker({"BENTOML_HOME": str(home), "RESNET18_PRECISION": "int8"})
    assert result.returncode != 0
    assert "no 'resnet18-int8' model" in result.stderr and "--quantize int8 --calibration" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RESNET18_RUNTIME": "openvino", "RESNET18_DEVICE": "cuda"}, "openvino runs on the CPU only"),
        ({"RESNET18_RUNTIME": "torch", "RESNET18_PRECISION": "int8"}, "int8 runs on OpenVINO"),
    ],
)
def test_settings_conflicts_fail_startup(model_store: tuple[Path, str], env: dict[str, str], message: str) -> None:
    home, _ = model_store
    result = run_model_worker({"BENTOML_HOME": str(home), **env})
    assert result.returncode != 0 and "SettingsConflict" in result.stderr and message in result.stderr


def test_a_store_model_without_openvino_is_upgraded_by_make_serve(tmp_path: Path, weights_file: Path) -> None:
    """A resnet18 imported before OpenVINO: `make serve`'s --if-missing stores the same weights again,
    with their OpenVINO model, instead of keeping a model the CPU default cannot run."""
    home = tmp_path / "home"
    first = run_import(home, "--weights", str(weights_file)).stdout.split()[-1]
    version = home / "models" / "resnet18" / first.split(":")[1]
    for path in sorted((version / "openvino").iterdir()):
        path.unlink()
    (version / "openvino").rmdir()
    again = run_import(home, "--weights", "imagenet", "--if-missing")
    assert again.returncode == 0, again.stderr
    upgraded = again.stdout.split()[-1]
    assert upgraded != first and "no OpenVINO model" in again.stderr
    new_version = home / "models" / "resnet18" / upgraded.split(":")[1]
    assert (new_version / "openvino" / "resnet18.xml").is_file()
    assert "resnet18-test.pth" in yaml.safe_load((new_version / "model.yaml").read_text())["metadata"]["weights"]


@pytest.mark.build
def test_bentoml_build_packs_the_int8_model_too(int8_store: Path) -> None:
    _, bento = bentoml_build(int8_store)
    info = yaml.safe_load((bento / "bento.yaml").read_text())
    (service,) = [s for s in info["services"] if s["name"] == "image-classifier"]
    # The bento names the store versions it packs (containerize copies them into the image).
    (int8_version,) = int8_versions(int8_store)
    tags = sorted(model["tag"] for model in service["models"])
    assert sorted(tag.split(":")[0] for tag in tags) == ["resnet18", "resnet18-int8"]
    assert f"resnet18-int8:{int8_version.name}" in tags


def test_bench_agreement_compares_the_stored_int8_on_your_photos(int8_store: Path, tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "mine", SERVED_SEEDS)
    result = subprocess.run(
        [sys.executable, "-m", "bench.agreement", str(folder), "--precision", "int8"],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(int8_store)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"int8 against fp32 on {len(SERVED_SEEDS)} images: top-1 agreement" in result.stdout
    assert "resnet18-int8:" in result.stdout


def test_the_torch_path_never_loads_openvino(model_store: tuple[Path, str]) -> None:
    """A GPU machine runs torch and may have no OpenVINO at all (bench/gpu_check.sh's wheels leave it out)."""
    home, _ = model_store
    code = (
        "import sys; sys.modules['openvino'] = None  # any import of it fails\n"
        "from service.http_service import ImageClassifier; from service.model_service import LoadedModel\n"
        "model = LoadedModel(ImageClassifier.inner.stored_model, ImageClassifier.inner.int8_model)\n"
        "print(model.info.runtime, model.ready, 'openvino' in sys.modules and sys.modules['openvino'] is not None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(home), "RESNET18_RUNTIME": "torch", "RESNET18_DEVICE": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["torch", "True", "False"]
