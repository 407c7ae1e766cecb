"""The HTTP API against a real `bentoml serve`, with real encoded images."""

from __future__ import annotations

import http.client
import io
import select
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from openapi_spec_validator import validate
from PIL import Image
from torchvision.models import ResNet18_Weights

from service.errors import ERROR_STATUSES
from service.timeouts import KEEPALIVE_S
from tests import images
from tests.server import Server

pytestmark = pytest.mark.server

LABELS = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
UVICORN_DEFAULT_KEEPALIVE_S = 5  # what `bentoml serve` passes to uvicorn without --timeout-keep-alive


def predict(server: Server, data: bytes, name: str = "image.jpg") -> httpx.Response:
    return httpx.post(f"{server.url}/predict", files={"image": (name, data)}, timeout=60)


def classify(server: Server, datas: list[bytes]) -> httpx.Response:
    files = [("images", (f"image{i}.jpg", data)) for i, data in enumerate(datas)]
    return httpx.post(f"{server.url}/classify", files=files, timeout=60)


def reference_probabilities(model: torch.nn.Module, data: bytes) -> torch.Tensor:
    """What the torchvision docs tell users to do: PIL -> RGB -> weights.transforms() -> model."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    batch = ResNet18_Weights.IMAGENET1K_V1.transforms()(image).unsqueeze(0)
    with torch.inference_mode():
        return torch.softmax(model(batch), dim=1)[0]


def assert_matches_reference(answer: dict[str, Any], expected: torch.Tensor, atol: float = 1e-4) -> None:
    top_scores, top_ids = expected.topk(5)
    assert answer["class_id"] == int(top_ids[0]), "top-1 differs from the torchvision reference"
    assert answer["label"] == LABELS[answer["class_id"]]
    assert [entry["class_id"] for entry in answer["top_k"]] == top_ids.tolist()
    for entry, score in zip(answer["top_k"], top_scores.tolist(), strict=True):
        assert entry["score"] == pytest.approx(score, abs=atol)
        assert entry["label"] == LABELS[entry["class_id"]]


def assert_still_serving(server: Server) -> None:
    response = predict(server, images.jpeg(seed=99))
    assert response.status_code == 200, response.text


def assert_client_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"], body["error"]


# --- correctness against the reference ------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [images.jpeg(seed=0), images.jpeg(640, 480, seed=1), images.encode(images.photo(300, 500, 2), "PNG")],
    ids=["jpeg-500x375", "jpeg-640x480", "png-portrait"],
)
def test_predict_matches_torchvision_reference(server: Server, reference_model: torch.nn.Module, data: bytes) -> None:
    response = predict(server, data)
    assert response.status_code == 200, response.text
    assert_matches_reference(response.json(), reference_probabilities(reference_model, data))


def test_classify_answers_each_image_in_request_order(server: Server, reference_model: torch.nn.Module) -> None:
    datas = [images.jpeg(seed=seed) for seed in range(10, 16)]
    response = classify(server, datas)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert isinstance(answers, list) and len(answers) == len(datas)
    for answer, data in zip(answers, datas, strict=True):
        assert_matches_reference(answer, reference_probabilities(reference_model, data))


def test_every_answer_names_the_model_and_its_weights(server: Server, model_store: tuple[Path, str]) -> None:
    _, tag = model_store
    single = predict(server, images.jpeg()).json()
    many = classify(server, [images.jpeg(), images.jpeg(seed=5)]).json()
    for answer in [single, *many]:
        model = answer["model"]
        assert model["tag"] == tag
        assert "resnet18-test.pth" in model["weights"] and "sha256" in model["weights"]
        assert model["trained"] is True and model["warning"] is None
        assert (model["runtime"], model["device"], model["precision"]) == ("openvino", "cpu", "fp32")


def test_health_endpoints(server: Server) -> None:
    assert httpx.get(f"{server.url}/livez").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "bentoml_service_request_total" in metrics or "bentoml_service_request_duration_seconds" in metrics


# --- batching ----------------------------------------------------------------------------------------


def batch_histogram(server: Server) -> tuple[float, float]:
    """(sum, count) of BentoML's adaptive batch size histogram for the model worker's infer()."""
    total = count = 0.0
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size") and 'method_name="infer"' in line:
            if line.startswith("bentoml_service_adaptive_batch_size_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("bentoml_service_adaptive_batch_size_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


def test_concurrent_requests_are_merged_into_batches(server: Server) -> None:
    requests = 32
    datas = [images.jpeg(seed=100 + i) for i in range(requests)]
    sum_before, count_before = batch_histogram(server)
    with ThreadPoolExecutor(max_workers=requests) as pool:
        responses = list(pool.map(lambda data: predict(server, data), datas))
    sum_after, count_after = batch_histogram(server)

    # Load within capacity: every request answered, none shed.
    assert [r.status_code for r in responses] == [200] * requests
    calls, batches = sum_after - sum_before, count_after - count_before
    assert calls == requests  # every /predict went through the batched infer()
    assert batches < requests, f"{requests} concurrent requests ran as {batches} batches: no batching"


def test_sustained_concurrency_never_fails(server: Server) -> None:
    """Well over 100 requests at 16 concurrent clients, all answered (a two-service design once lost
    requests here when BentoML's inter-service client replaced its session every 100 calls)."""
    data = images.jpeg(seed=7)
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: predict(server, data).status_code, range(160)))
    assert statuses == [200] * 160


def test_predict_and_classify_share_one_batched_path(server: Server) -> None:
    sum_before, _ = batch_histogram(server)
    assert predict(server, images.jpeg()).status_code == 200
    assert classify(server, [images.jpeg(), images.jpeg(seed=3)]).status_code == 200
    sum_after, _ = batch_histogram(server)
    assert sum_after - sum_before == 2  # one batched call for each endpoint


# --- every kind of image a user sends -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        images.png_with_alpha(),
        images.palette_gif(),
        images.animated_gif(),
        images.grayscale_jpeg(),
        images.cmyk_jpeg(),
    ],
    ids=["png-alpha", "palette-gif", "animated-gif", "grayscale", "cmyk-jpeg"],
)
def test_unusual_but_valid_images_are_classified(server: Server, data: bytes) -> None:
    response = predict(server, data)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert 0 <= answer["class_id"] < 1000 and 0.0 < answer["score"] <= 1.0
    assert answer["score"] == answer["top_k"][0]["score"]


def test_16bit_png_uses_its_full_range(server: Server) -> None:
    sixteen, eight = images.png_16bit()
    answer16, answer8 = predict(server, sixteen).json(), predict(server, eight).json()
    # The same picture at 16 bits must classify like its 8-bit version (clipping would make it white).
    assert answer16["class_id"] == answer8["class_id"]
    assert answer16["score"] == pytest.approx(answer8["score"], abs=1e-3)


def test_exif_orientation_is_applied(server: Server) -> None:
    rotated, upright = images.exif_rotated_jpeg()
    answer_rotated, answer_upright = predict(server, rotated).json(), predict(server, upright).json()
    assert answer_rotated["class_id"] == answer_upright["class_id"]
    assert answer_rotated["score"] == pytest.approx(answer_upright["score"], abs=2e-3)


def test_twelve_megapixel_photo(server: Server, reference_model: torch.nn.Module, twelve_mp_jpeg: bytes) -> None:
    response = predict(server, twelve_mp_jpeg)
    assert response.status_code == 200, response.text
    # Decoded at a reduced DCT scale (draft mode), the result stays close to a full-resolution decode.
    expected = reference_probabilities(reference_model, twelve_mp_jpeg)
    served = response.json()
    assert served["class_id"] in expected.topk(5).indices.tolist()
    assert abs(served["score"] - float(expected[served["class_id"]])) < 0.05


# --- bad input: 4xx with a JSON error, and the server keeps serving ------------------------------------


def test_non_image_bytes(server: Server) -> None:
    assert_client_error(predict(server, b"%PDF-1.4 definitely not an image", "doc.pdf"), 422, "not an image")
    assert_still_serving(server)


def test_empty_file(server: Server) -> None:
    assert_client_error(predict(server, b""), 400, "empty")
    assert_still_serving(server)


def test_truncated_jpeg(server: Server) -> None:
    assert_client_error(predict(server, images.truncated_jpeg()), 422, "could not be decoded")
    assert_still_serving(server)


def test_wrong_field_name(server: Server) -> None:
    response = httpx.post(f"{server.url}/predict", files={"file": ("a.jpg", images.jpeg())})
    assert_client_error(response, 400, "'file'", "'image'")
    response = httpx.post(f"{server.url}/classify", files={"image": ("a.jpg", images.jpeg())})
    assert_client_error(response, 400, "'image'", "'images'")
    assert_still_serving(server)


def test_no_file(server: Server) -> None:
    for endpoint in ("predict", "classify"):
        response = httpx.post(f"{server.url}/{endpoint}", files={})
        assert response.status_code == 400, response.text
        assert "error" in response.json()
        response = httpx.post(f"{server.url}/{endpoint}", content=b"")
        assert response.status_code == 400, response.text
    assert_still_serving(server)


def test_multipart_body_with_no_part_at_all(server: Server) -> None:
    """`--BOUNDARY--` alone: a valid multipart body without any part (schemathesis found a 500 here)."""
    headers = {"content-type": "multipart/form-data; boundary=BOUNDARY"}
    for endpoint, message in (("predict", "'image'"), ("classify", "'images'")):
        response = httpx.post(f"{server.url}/{endpoint}", content=b"--BOUNDARY--\r\n", headers=headers)
        assert_client_error(response, 400, message)
    assert_still_serving(server)


def test_json_or_raw_bytes_instead_of_multipart(server: Server) -> None:
    response = httpx.post(f"{server.url}/predict", json={"image": "/etc/passwd"})
    assert response.status_code == 400 and "error" in response.json()
    response = httpx.post(f"{server.url}/predict", content=images.jpeg(), headers={"content-type": "image/jpeg"})
    assert response.status_code == 400 and "error" in response.json()
    assert_still_serving(server)


def test_url_instead_of_file_is_refused_not_fetched(server: Server) -> None:
    response = httpx.post(f"{server.url}/predict", data={"image": "http://169.254.169.254/latest/meta-data/"})
    assert_client_error(response, 400, "file uploads")
    assert_still_serving(server)


def test_decompression_bomb(server: Server, bomb_png: bytes) -> None:
    assert_client_error(predict(server, bomb_png, "bomb.png"), 413, "30000x30000", "limit")
    assert_still_serving(server)


def test_upload_over_the_size_limit(server: Server) -> None:
    too_big = b"\xff\xd8" + b"\0" * (9 * 1024 * 1024)  # the test server's limit is 8 MiB
    assert_client_error(predict(server, too_big), 413, "limit")
    assert_still_serving(server)


def test_streamed_upload_over_the_size_limit(server: Server) -> None:
    """Without Content-Length (chunked), the limit still holds while the body streams in."""
    boundary = "limit-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'.encode()

    def body() -> Any:
        yield head
        for _ in range(10):
            yield b"\0" * (1024 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{server.url}/predict",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert_client_error(response, 413, "limit")
    assert_still_serving(server)


def test_many_images_in_one_request(server: Server) -> None:
    sixteen = [images.jpeg(seed=200 + i) for i in range(16)]  # the test server's limit is 16
    response = classify(server, sixteen)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 16
    assert_client_error(classify(server, [*sixteen, images.jpeg()]), 413, "17 images", "16")
    assert_still_serving(server)


def test_one_bad_image_among_many_is_named(server: Server) -> None:
    response = classify(server, [images.jpeg(), images.jpeg(seed=1), b"garbage"])
    assert_client_error(response, 422, "image 2")
    assert response.json()["image"] == 2
    assert_still_serving(server)


def test_two_files_on_predict(server: Server) -> None:
    files = [("image", ("a.jpg", images.jpeg())), ("image", ("b.jpg", images.jpeg(seed=1)))]
    assert_client_error(httpx.post(f"{server.url}/predict", files=files), 400, "one file")
    assert_still_serving(server)


# --- connections and the API's self-description ----------------------------------------------------------


def test_idle_keepalive_connection_outlives_uvicorns_default(server: Server) -> None:
    """uvicorn's default closes idle connections after 5 s; the service keeps them for KEEPALIVE_S
    (above the load balancer's idle timeout), so a reused connection is still open."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/livez")
        first = connection.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("connection") != "close"
        sock = connection.sock
        assert sock is not None
        time.sleep(UVICORN_DEFAULT_KEEPALIVE_S + 2)
        # Still open: a connection the server had closed would be readable (end of stream).
        readable, _, _ = select.select([sock], [], [], 0)
        assert not readable, "the server closed the idle connection"
        connection.request("GET", "/livez")
        second = connection.getresponse()
        second.read()
        assert second.status == 200 and connection.sock is sock  # the same connection, reused
    finally:
        connection.close()
    assert KEEPALIVE_S > UVICORN_DEFAULT_KEEPALIVE_S + 2


def test_openapi_document_validates_and_lists_the_real_statuses(server: Server) -> None:
    document = httpx.get(f"{server.url}/docs.json").json()
    validate(document)  # openapi-spec-validator: a client generator can read it
    schemas = document["components"]["schemas"]
    for route in ("/classify", "/predict"):
        responses = document["paths"][route]["post"]["responses"]
        assert set(responses) == {"200", *(str(status) for status in ERROR_STATUSES)}
        for status in ERROR_STATUSES:
            assert responses[str(status)]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert schemas["Error"]["required"] == ["error"]
    # The statuses the tests above provoke are all documented.
    assert {400, 413, 422, 503} <= set(ERROR_STATUSES)
