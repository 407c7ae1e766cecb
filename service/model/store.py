"""ResNet18 in the BentoML model store: what ``bentoml build`` packs into the bento, so a container never
downloads, converts or quantizes at boot. ``python -m service.import_model`` writes; the service reads.

Two entries:
- ``resnet18``: the torchvision state dict (torch runtime) and the same weights converted to OpenVINO
  (``openvino/``, the CPU runtime's fp32/bf16 model);
- ``resnet18-int8``: the INT8 OpenVINO model quantized from a ``resnet18`` version on the user's photos,
  with the agreement measured against fp32 at import.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml

from ..config import INT8_MODEL_NAME, MODEL_NAME
from . import quantize
from .runtime import WeightsError

if TYPE_CHECKING:  # each runtime's package is imported where it is used: the torch path never loads
    import openvino as ov  # OpenVINO, and the OpenVINO path (the CPU image has no torch) never loads torch
    import torch

logger = logging.getLogger(f"bentoml.{__name__}")  # BentoML only shows its own loggers

OPENVINO_DIR = "openvino"


@dataclass(frozen=True)
class StoredWeights:
    tag: str
    description: str  # where the weights came from, as recorded at import
    state_dict: dict[str, torch.Tensor] | None  # None: imported as untrained


def import_weights(source: str, if_missing: bool = False, or_untrained: bool = False) -> str:
    """Load ``source`` (imagenet | untrained | PATH) and save it as a new ``resnet18`` model version.

    Returns the tag. With ``if_missing``, an existing ``resnet18`` model is kept and its tag returned.
    With ``or_untrained``, weights that cannot be loaded are replaced by untrained ones, loudly: the
    fallback of `make serve` on a machine without internet.
    """
    from .weights import load_state_dict

    if if_missing:
        try:
            existing = bentoml.models.get(f"{MODEL_NAME}:latest")
        except bentoml.exceptions.NotFound:
            pass
        else:
            if Path(existing.path_of(OPENVINO_DIR)).is_dir():
                logger.info("model %s is already in the store; keeping it", existing.tag)
                return str(existing.tag)
            # Imported before the OpenVINO runtime existed: the same weights again, with their IR.
            logger.info("model %s has no OpenVINO model; storing a new version with one", existing.tag)
            stored = read_weights(existing)
            return _save(stored.state_dict, stored.description, str(existing.info.metadata.get("source", "")))
    try:
        state_dict, description = load_state_dict(source, progress=True)
    except WeightsError as exc:
        if not or_untrained:
            raise
        logger.warning(
            "=" * 72 + "\nWARNING: %s\nImporting UNTRAINED weights instead: predictions will be random.\n" + "=" * 72,
            exc,
        )
        state_dict, description = None, f"untrained (fallback: {source} could not be loaded)"
    return _save(state_dict, description, source)


def _save(state_dict: dict[str, torch.Tensor] | None, description: str, source: str) -> str:
    import openvino as ov
    import torch

    from . import openvino_runtime
    from .weights import STATE_DICT_FILE, build_resnet18

    served = openvino_runtime.export(build_resnet18(state_dict))  # before create: nothing half-written
    with bentoml.models.create(
        MODEL_NAME,
        labels={"architecture": "resnet18", "trained": "no" if state_dict is None else "yes"},
        metadata={
            "weights": description,
            "source": source,
            "torch": str(torch.__version__),
            "openvino": ov.get_version(),
        },
    ) as model:
        if state_dict is not None:
            torch.save(state_dict, model.path_of(STATE_DICT_FILE))
        openvino_runtime.save(served, Path(model.path_of(OPENVINO_DIR)))
    return str(model.tag)


def read_weights(model: bentoml.Model) -> StoredWeights:
    """Read a store entry written by :func:`import_weights` (the torch runtime's state dict)."""
    import torch

    from .weights import STATE_DICT_FILE

    description = str(model.info.metadata.get("weights", "unknown"))
    path = model.path_of(STATE_DICT_FILE)
    state_dict: dict[str, torch.Tensor] | None = None
    if model.info.labels.get("trained") != "no":
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"model {model.tag} has no readable {STATE_DICT_FILE}: {exc}") from exc
    return StoredWeights(tag=str(model.tag), description=description, state_dict=state_dict)


def read_openvino(model: bentoml.Model) -> ov.Model:
    """The OpenVINO model of a ``resnet18`` or ``resnet18-int8`` entry, as served."""
    from . import openvino_runtime

    folder = Path(model.path_of(OPENVINO_DIR))
    if not (folder / openvino_runtime.IR_FILE).is_file():
        raise WeightsError(
            f"model {model.tag} has no OpenVINO model (imported before OpenVINO was supported): import it "
            "again with `python -m service.import_model --weights imagenet|PATH`, or set RESNET18_RUNTIME=torch"
        )
    return openvino_runtime.read(folder)


def import_int8(
    calibration: Path, source_tag: str = f"{MODEL_NAME}:latest", min_agreement: float | None = None, force: bool = False
) -> tuple[str, quantize.Agreement]:
    """Quantize a stored ``resnet18`` version to INT8 on the photos in ``calibration`` and store it as a
    new ``resnet18-int8`` version, unless its agreement with fp32 on the held-out photos is below
    ``min_agreement`` (then :class:`~.quantize.QuantizationError`, unless ``force``). Writes nothing
    on any failure."""
    try:
        import nncf  # the import command's own dependency (requirements-dev.txt), never the server's
    except ImportError:
        raise quantize.QuantizationError("INT8 needs NNCF: pip install -r requirements-dev.txt") from None
    import openvino as ov

    from . import openvino_runtime
    from .weights import STATE_DICT_FILE, sha256_of

    threshold = quantize.DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement
    try:
        source = bentoml.models.get(source_tag)
    except bentoml.exceptions.NotFound:
        raise quantize.QuantizationError(
            f"no fp32 model {source_tag} in the BentoML model store to quantize: import one first "
            "(`python -m service.import_model --weights imagenet|PATH`, or add --weights to this command)"
        ) from None
    if source.info.labels.get("trained") == "no":
        raise quantize.QuantizationError(f"{source.tag} holds untrained weights: quantizing them means nothing")
    photos = quantize.read_photos(calibration)
    fp32_served = read_openvino(source)
    logger.info(
        "quantizing %s to INT8 on %d photos (%d held out, %d unreadable skipped)",
        source.tag,
        len(photos.calibration),
        len(photos.held_out),
        len(photos.skipped),
    )
    int8_served = quantize.quantize_int8(fp32_served, photos.calibration)
    measured = quantize.agreement(
        openvino_runtime.OpenVINOClassifier(fp32_served, "fp32", cache_dir=None),
        openvino_runtime.OpenVINOClassifier(int8_served, "int8", cache_dir=None),
        photos.held_out,
    )
    logger.info("INT8 against fp32: %s", measured)
    if measured.rate < threshold and not force:
        raise quantize.QuantizationError(
            f"INT8 refused: {measured}; the threshold is {100 * threshold:.0f}% (--min-agreement). More or more "
            "representative calibration photos usually fix it; --force stores it anyway"
        )

    metadata: dict[str, Any] = {
        "weights": f"INT8 (NNCF post-training) of {source.tag}: {source.info.metadata.get('weights', 'unknown')!s}",
        "source_model": str(source.tag),
        "source_sha256": sha256_of(Path(source.path_of(STATE_DICT_FILE))),
        "calibration_images": len(photos.calibration),
        "calibration_sha256": photos.digest,
        "held_out_images": len(photos.held_out),
        "agreement": measured.as_dict(),
        "min_agreement": threshold,
        "forced": bool(force and measured.rate < threshold),
        "nncf": nncf.__version__,
        "openvino": ov.get_version(),
    }
    with bentoml.models.create(
        INT8_MODEL_NAME,
        labels={"architecture": "resnet18", "trained": "yes", "precision": "int8"},
        metadata=metadata,
    ) as model:
        openvino_runtime.save(int8_served, Path(model.path_of(OPENVINO_DIR)))
    return str(model.tag), measured
