"""Write a torchvision-format ResNet18 state dict for the image built here and for the tests (ImageNet
weights cannot be downloaded on this machine). Seeded, so rebuilds and `bentoml serve` get the very same
weights, and the image carries a real weights file as it would in production. Never committed: it goes
under build/.

python container/stand_in_weights.py OUT.pth [--confident]

Two kinds:
- plain: random weights with spread batch-norm statistics (logits spread out, answers worth comparing);
  its outputs are near-uniform, as no trained model's are;
- ``--confident``: answers that look trained (mean top-1 probability ~0.58, ~50 distinct classes over
  400 photos), for what quantization and reduced precision are checked with. Somewhat more sensitive to
  rounding than a trained ResNet18: top-1 agreement with fp32 on 400 photos 97.8% in bf16 and 97.0% in
  INT8, where trained ResNet18 loses 0.3 points of ImageNet accuracy in INT8. Made from random weights,
  not trained: smooth first-layer filters (as trained ones are), batch norms calibrated on photos,
  damped residual branches, and a classifier over the features' main directions.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision

PHOTOS = 128  # generated photos the confident model's batch norms and classifier are fitted on
PHOTO_SEEDS = range(100_000, 100_000 + PHOTOS)  # never the seeds tests and benchmarks classify


def main(out: str) -> None:
    torch.save(plain().state_dict(), out)


def plain() -> torchvision.models.ResNet:
    generator = torch.Generator().manual_seed(1234)
    model = torchvision.models.resnet18(weights=None)
    # Spread batch-norm statistics, so logits are spread out and answers are worth comparing.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


@torch.no_grad()
def confident(out: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from container/
    from bench.sample_images import varied_photo
    from service.preprocessing import normalize, preprocess

    torch.manual_seed(1234)
    model = torchvision.models.resnet18(weights=None)
    # Low-pass the 7x7 first-layer filters and give them a DC part: trained ones are smooth colour and
    # edge detectors; random ones respond mostly to pixel noise.
    binomial = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    kernel = (binomial[:, None] * binomial[None, :] / 256).expand(1, 1, 5, 5)
    weight = model.conv1.weight
    smooth = torch.nn.functional.conv2d(weight.reshape(-1, 1, 7, 7), kernel, padding=2).reshape(weight.shape)
    weight.copy_(smooth + 3 * weight.mean(dim=(2, 3), keepdim=True))
    crops = np.stack([preprocess(varied_photo(seed), 50_000_000) for seed in PHOTO_SEEDS])
    photos = normalize(torch.from_numpy(crops))
    # Batch norms hold the statistics of the photos they see (cumulative average over them).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    for start in range(0, PHOTOS, 32):
        model(photos[start : start + 32])
    model.eval()
    # Damped residual branches: the net stays close to its shortcuts, as trained ResNets start.
    for block in model.modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            block.bn2.weight.mul_(0.3)
    # The classifier: 1000 random mixes of the features' 6 main directions, scaled to logits with a
    # standard deviation of 6 over the photos (confident, not near-uniform), centred on their mean.
    features = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten())(photos)
    mean = features.mean(dim=0)
    _, _, directions = torch.linalg.svd(features - mean, full_matrices=False)
    mixes = torch.randn(1000, 6, generator=torch.Generator().manual_seed(7)) @ directions[:6]
    mixes *= 6.0 / ((features - mean) @ mixes.T).std()
    model.fc.weight.copy_(mixes)
    model.fc.bias.copy_(-(mixes @ mean))
    torch.save(model.state_dict(), out)


if __name__ == "__main__":
    if "--confident" in sys.argv[2:]:
        confident(sys.argv[1])
    else:
        main(sys.argv[1])
