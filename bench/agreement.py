"""Top-1 agreement of a fast precision (bf16 on CPU, fp16 on GPU) with fp32, on your own images.

    python -m bench.agreement PHOTOS_DIR [--weights imagenet|PATH] [--precision bf16|fp16] [--device cpu|cuda]

Both precisions see exactly the service's preprocessing; the answer is the share of images whose best
class is the same, and the images where it is not.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from service.model import PRECISION_DTYPES, BatchClassifier, RuntimeChoice, build_resnet18, load_state_dict
from service.preprocessing import ImageError, preprocess

SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Agreement:
    precision: str
    images: int
    same_top1: int
    max_score_difference: float
    disagreements: list[str]

    @property
    def rate(self) -> float:
        return self.same_top1 / self.images if self.images else float("nan")


def top1_agreement(
    crops: torch.Tensor, names: list[str], model: torch.nn.Module, device: str, precision: str, batch_size: int = 32
) -> Agreement:
    # BatchClassifier works on its own (fused) copy of ``model``: both can start from the same one.
    reference = BatchClassifier(model, RuntimeChoice(torch.device(device), torch.float32))
    fast = BatchClassifier(model, RuntimeChoice(torch.device(device), PRECISION_DTYPES[precision]))
    same, worst, disagreements = 0, 0.0, []
    for start in range(0, len(crops), batch_size):
        batch = crops[start : start + batch_size]
        exact, quick = reference(batch), fast(batch)
        for row, name in enumerate(names[start : start + batch_size]):
            if int(exact[row].argmax()) == int(quick[row].argmax()):
                same += 1
            else:
                disagreements.append(name)
            worst = max(worst, float((exact[row] - quick[row]).abs().max()))
    return Agreement(precision, len(crops), same, worst, disagreements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", default="imagenet", help="imagenet | untrained | PATH to a state dict")
    parser.add_argument("--precision", default=None, choices=["bf16", "fp16"], help="default: fp16 on GPU, bf16 on CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    paths = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    crops, names = [], []
    for path in paths:
        try:
            crops.append(preprocess(path.read_bytes(), max_pixels=50_000_000))
            names.append(str(path.relative_to(args.folder)))
        except ImageError as exc:
            print(f"skipped {path}: {exc}")
    if not crops:
        raise SystemExit(f"no readable images under {args.folder}")
    state, description = load_state_dict(args.weights)
    precision = args.precision or ("fp16" if args.device == "cuda" else "bf16")
    result = top1_agreement(torch.stack(crops), names, build_resnet18(state), args.device, precision)
    print(f"weights: {description}")
    print(
        f"top-1 agreement {precision} vs fp32 on {result.images} images: {100 * result.rate:.2f}% "
        f"({result.same_top1}/{result.images}); largest probability difference {result.max_score_difference:.4f}"
    )
    for name in result.disagreements:
        print(f"  differs: {name}")


if __name__ == "__main__":
    main()
