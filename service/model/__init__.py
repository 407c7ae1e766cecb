"""The model side of the service: ResNet18's weights, the two runtimes that run it, and the model store.

- :mod:`.weights`: weights sources and torchvision's architecture; :mod:`.labels`: the class names;
- :mod:`.runtime`: the :class:`~.runtime.Classifier` interface both runtimes implement, and which one
  runs (``RESNET18_RUNTIME``, ``RESNET18_DEVICE``, ``RESNET18_PRECISION``);
- :mod:`.torch_runtime`, :mod:`.openvino_runtime`: one module per runtime;
- :mod:`.quantize`: INT8 from the user's photos, and its agreement with fp32;
- :mod:`.store`: the BentoML model store entries that ``bentoml build`` packs.

The request path (:mod:`service.http_service` and what it imports) sees only a Classifier, and imports
torch only where torch runs (:mod:`.torch_runtime`, GPU JPEG decoding, the CUDA check): the CPU image
carries no torch (bentofile.cpu.yaml; tests/test_no_torch.py).
"""
