"""The plain baseline: the classic Flask example users migrate from. One image per request, torchvision's
preprocessing, fp32, no batching, Flask's threaded server.

    python -m bench.baseline_server --port 5000 [--weights PATH]
"""

from __future__ import annotations

import argparse
import io

import torch
import torchvision
from flask import Flask, jsonify, request
from PIL import Image
from torchvision.models import ResNet18_Weights

WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def create_app(weights_path: str | None) -> Flask:
    model = torchvision.models.resnet18(weights=None)
    if weights_path:
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    model.eval()
    transform = WEIGHTS.transforms()
    labels = WEIGHTS.meta["categories"]
    app = Flask(__name__)

    @app.post("/predict")
    def predict():  # type: ignore[no-untyped-def]
        image = Image.open(io.BytesIO(request.files["image"].read())).convert("RGB")
        with torch.inference_mode():
            probabilities = torch.softmax(model(transform(image).unsqueeze(0)), dim=1)[0]
        score, class_id = probabilities.max(dim=0)
        return jsonify(class_id=int(class_id), label=labels[int(class_id)], score=float(score))

    @app.get("/health")
    def health():  # type: ignore[no-untyped-def]
        return "ok"

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--weights", default=None)
    args = parser.parse_args()
    create_app(args.weights).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
