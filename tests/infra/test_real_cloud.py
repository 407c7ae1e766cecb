"""`pulumi up` for real, through the Automation API: up, wait for /readyz through the ALB, classify an
image, destroy. It creates GPU instances and costs money (about $1 for the ~20 minutes it runs on the
default g4dn.xlarge), so besides the Pulumi CLI and AWS credentials it needs an explicit opt-in and an
image already pushed (docs/deploy.md):

    ELASTIC_RESNET_CLOUD_TEST=1 ELASTIC_RESNET_IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag> \\
    AWS_REGION=us-east-1 .venv/bin/python -m pytest tests/infra/test_real_cloud.py
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests import images

REPO = Path(__file__).resolve().parents[2]


def _aws_credentials() -> bool:
    try:
        import boto3
    except ImportError:
        return bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
    return boto3.Session().get_credentials() is not None


def _skip_reason() -> str | None:
    if shutil.which("pulumi") is None:
        return "the Pulumi CLI is not installed"
    if not _aws_credentials():
        return "no AWS credentials"
    if os.environ.get("ELASTIC_RESNET_CLOUD_TEST") != "1":
        return "creates GPU instances that cost money: set ELASTIC_RESNET_CLOUD_TEST=1 to run it"
    if not os.environ.get("ELASTIC_RESNET_IMAGE"):
        return "set ELASTIC_RESNET_IMAGE to a pushed image of the bento (bentoml containerize + docker push)"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def test_up_classify_destroy() -> None:
    from pulumi import automation as auto

    region = os.environ.get("AWS_REGION", "us-east-1")
    stack = auto.create_stack(
        stack_name=f"ci-{uuid.uuid4().hex[:8]}",
        work_dir=str(REPO),
    )
    try:
        stack.set_config("aws:region", auto.ConfigValue(region))
        fleet = {"imageUri": os.environ["ELASTIC_RESNET_IMAGE"], "warmPoolMinSize": 0}
        if os.environ.get("ELASTIC_RESNET_AMI"):
            fleet["amiId"] = os.environ["ELASTIC_RESNET_AMI"]
        stack.set_config("elastic-resnet:fleet", auto.ConfigValue(json.dumps(fleet)))
        result = stack.up(on_output=print)
        url = result.outputs["endpoint_url"].value
        deadline = time.monotonic() + 30 * 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(15)
        else:
            pytest.fail(f"{url}/readyz never answered 200")
        response = httpx.post(f"{url}/classify", files={"images": ("a.jpg", images.jpeg())}, timeout=60)
        assert response.status_code == 200, response.text
        (answer,) = response.json()
        assert 0 <= answer["class_id"] < 1000 and answer["model"]["device"] == "cuda"
    finally:
        stack.destroy(on_output=print)
        stack.workspace.remove_stack(stack.name)
