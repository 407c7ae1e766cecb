"""Top-1 agreement of a faster precision (bf16 or INT8 on CPU, fp16 on GPU) with fp32, on your own images.

    python -m bench.agreement PHOTOS_DIR [--weights imagenet|PATH] [--precision bf16|fp16] [--device cpu|cuda]
    python -m bench.agreement PHOTOS_DIR --precision int8    # the store's resnet18-int8 against its fp32

Both sides see exactly the service's preprocessing and run as the service runs them (bf16 on a CPU:
OpenVINO; fp16: torch on the GPU). INT8 is the model made by ``python -m service.import_model --quantize
int8``, compared with the fp32 model it was quantized from; use photos it was not calibrated on. The
answer is the share of images whose best class is the same, the probability differences, and the
images where the best class differs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from service.model.quantize import Agreement, QuantizationError, agreement, read_folder
from service.model.runtime import Classifier, RuntimeChoice


def classifiers(model: torch.nn.Module, device: str, precision: str) -> tuple[Classifier, Classifier]:
    """(fp32, ``precision``) on the runtime the service uses for them on ``device``."""
    if device == "cuda":
        from service.model.torch_runtime import TorchClassifier

        return (
            TorchClassifier(model, RuntimeChoice("torch", device, "fp32")),
            TorchClassifier(model, RuntimeChoice("torch", device, precision)),  # type: ignore[arg-type]
        )
    from service.model.openvino_runtime import OpenVINOClassifier, export

    served = export(model)
    return OpenVINOClassifier(served, "fp32", cache_dir=None), OpenVINOClassifier(served, precision, cache_dir=None)


def stored_int8() -> tuple[Classifier, Classifier, str]:
    """(fp32, INT8) from the model store: resnet18-int8:latest and the resnet18 version it came from."""
    import bentoml

    from service.config import INT8_MODEL_NAME
    from service.model.openvino_runtime import OpenVINOClassifier
    from service.model.store import read_openvino

    int8 = bentoml.models.get(f"{INT8_MODEL_NAME}:latest")
    source = bentoml.models.get(str(int8.info.metadata["source_model"]))
    fp32 = OpenVINOClassifier(read_openvino(source), "fp32", cache_dir=None)
    return fp32, OpenVINOClassifier(read_openvino(int8), "int8", cache_dir=None), f"{int8.tag} vs {source.tag}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", default="imagenet", help="imagenet | untrained | PATH to a state dict")
    parser.add_argument(
        "--precision", default=None, choices=["bf16", "fp16", "int8"], help="default: fp16 on GPU, bf16 on CPU"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    try:
        photos = read_folder(args.folder)
    except QuantizationError as exc:
        raise SystemExit(str(exc)) from None
    for skipped in photos.skipped:
        print(f"skipped {skipped}")
    crops, names = photos.crops, photos.names
    precision = args.precision or ("fp16" if args.device == "cuda" else "bf16")
    if precision == "int8":
        reference, candidate, description = stored_int8()
    else:
        from service.model.weights import build_resnet18, load_state_dict

        state, description = load_state_dict(args.weights)
        reference, candidate = classifiers(build_resnet18(state), args.device, precision)
    result: Agreement = agreement(reference, candidate, crops)
    print(f"model: {description}")
    print(f"{precision} against fp32 on {result.images} images: {result}")
    for index in result.disagreements:
        print(f"  differs: {names[index]}")


if __name__ == "__main__":
    main()
