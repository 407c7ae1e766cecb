"""Put ResNet18 weights into the BentoML model store.

python -m service.import_model --weights imagenet    # torchvision's ImageNet weights (internet)
python -m service.import_model --weights model.pth   # a local torchvision-format state dict
python -m service.import_model --weights untrained   # random weights, for smoke tests only
"""

from __future__ import annotations

import argparse
import logging
import sys

from .model import WeightsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.import_model", description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True, help="imagenet | untrained | PATH to a .pth state dict")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a resnet18 model is already in the store"
    )
    parser.add_argument(
        "--or-untrained",
        action="store_true",
        help="if the weights cannot be loaded (e.g. no internet), import untrained ones with a loud warning",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from .model_store import import_weights  # imports bentoml and torch: keep --help fast

    try:
        tag = import_weights(args.weights, if_missing=args.if_missing, or_untrained=args.or_untrained)
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
