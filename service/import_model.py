"""Put ResNet18 into the BentoML model store (torch weights and their OpenVINO model), and make its INT8
version from your own photos.

python -m service.import_model --weights imagenet    # torchvision's ImageNet weights (internet)
python -m service.import_model --weights model.pth   # a local torchvision-format state dict
python -m service.import_model --weights untrained   # random weights, for smoke tests only
python -m service.import_model --quantize int8 --calibration PHOTOS_DIR [--weights W]
    # INT8 of the store's resnet18:latest (or of W, imported first), checked against fp32 on a quarter
    # of the photos held out from calibration; refused below --min-agreement unless --force
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.import_model", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="imagenet | untrained | PATH to a .pth state dict")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a resnet18 model is already in the store"
    )
    parser.add_argument(
        "--or-untrained",
        action="store_true",
        help="if the weights cannot be loaded (e.g. no internet), import untrained ones with a loud warning",
    )
    parser.add_argument("--quantize", choices=["int8"], help="also make the INT8 OpenVINO model (resnet18-int8)")
    parser.add_argument("--calibration", type=Path, help="with --quantize: a folder of your own photos (100+)")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="with --quantize: least top-1 agreement with fp32 on the held-out photos (default 0.95)",
    )
    parser.add_argument("--force", action="store_true", help="with --quantize: store INT8 even below --min-agreement")
    args = parser.parse_args(argv)
    if args.weights is None and args.quantize is None:
        parser.error("give --weights, --quantize int8, or both")
    if args.quantize and args.calibration is None:
        parser.error("--quantize int8 needs --calibration PHOTOS_DIR")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    # These import bentoml, torch and OpenVINO: keep --help fast.
    from .model.quantize import QuantizationError
    from .model.store import import_int8, import_weights
    from .model.weights import WeightsError

    try:
        if args.weights is not None:
            tag = import_weights(args.weights, if_missing=args.if_missing, or_untrained=args.or_untrained)
            print(tag)
        if args.quantize:
            source = tag if args.weights is not None else "resnet18:latest"
            int8_tag, _ = import_int8(args.calibration, source, args.min_agreement, args.force)
            print(int8_tag)
    except (WeightsError, QuantizationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
