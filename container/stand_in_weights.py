"""Write a torchvision-format ResNet18 state dict for the image built here (ImageNet weights cannot be
downloaded on this machine). Seeded, so rebuilds and `bentoml serve` get the very same weights, and the
image carries a real weights file as it would in production. Never committed: it goes under build/.

python container/stand_in_weights.py OUT.pth
"""

from __future__ import annotations

import sys

import torch
import torchvision


def main(out: str) -> None:
    generator = torch.Generator().manual_seed(1234)
    model = torchvision.models.resnet18(weights=None)
    # Spread batch-norm statistics, so logits are spread out and answers are worth comparing.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    torch.save(model.state_dict(), out)


if __name__ == "__main__":
    main(sys.argv[1])
