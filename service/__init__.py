"""elastic-resnet's BentoML service: ResNet18 image classification with adaptive batching.

``bentofile.yaml`` points at ``service.http_service:ImageClassifier``; ``bentoml serve`` starts it.
This package file imports nothing, so that light modules (``service.timeouts``) can be read by the
Pulumi program and the planner without loading BentoML or torch.
"""
