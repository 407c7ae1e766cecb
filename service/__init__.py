"""elastic-resnet's BentoML service: ResNet18 image classification with adaptive batching.

``bentofile.yaml`` points at ``service:ImageClassifier``; ``bentoml serve`` starts it with its
model worker (:class:`service.model_service.ResNet18`).
"""

from .http_service import ImageClassifier
from .model_service import ResNet18

__all__ = ["ImageClassifier", "ResNet18"]
