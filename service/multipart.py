"""Strict multipart parsing for the image endpoints, installed over BentoML's own.

BentoML 1.4's ``MultipartSerde.parse_request`` downloads any URL sent as a text field in place of a
file (a server-side fetch of attacker-chosen URLs, unbounded in size), and answers a file sent under a
field name the endpoint does not have with a 500 (it tries to JSON-decode the file). This parser
accepts file uploads under the endpoint's own field names only and answers anything else with a 400
that names the expected fields.

It also hands the uploads to the endpoint as they are (starlette ``UploadFile``, in memory up to 1 MiB)
instead of letting BentoML's ``Path`` validator copy each one into a temporary file the handler then
reads back: endpoints annotate their fields as ``Path`` (that is what makes BentoML treat them as
multipart file fields and document them so) and read them with :func:`read_upload`.
"""

from __future__ import annotations

import typing as t
from pathlib import Path

from _bentoml_impl.serde import MultipartSerde
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .errors import Rejected

T = t.TypeVar("T")


async def parse_uploads_only(self: MultipartSerde, request: Request, cls: type[T]) -> T:
    fields: list[str] = list(getattr(cls, "model_fields", {}))
    file_fields = set(getattr(cls, "multipart_fields", ()))
    expected = ", ".join(repr(name) for name in fields) or "no fields"
    try:
        form = await request.form()
    except Exception as exc:  # starlette's MultiPartException and friends: the body is malformed
        raise Rejected(400, f"malformed multipart body: {exc}") from None
    data: dict[str, t.Any] = {}
    for name in dict.fromkeys(form.keys()):
        if name not in file_fields:
            raise Rejected(400, f"unexpected field {name!r}: this endpoint takes {expected} (file uploads)")
        uploads = form.getlist(name)
        if not all(isinstance(upload, UploadFile) for upload in uploads):
            raise Rejected(400, f"field {name!r} must hold file uploads; URLs and text are not accepted")
        annotation = str(cls.model_fields[name].annotation)  # type: ignore[attr-defined]
        data[name] = uploads if annotation.startswith("list") else uploads[0]
        if not annotation.startswith("list") and len(uploads) > 1:
            raise Rejected(400, f"field {name!r} takes one file; {len(uploads)} were sent (use /classify)")
    for name in file_fields - data.keys():  # a form without the field at all, even with no part (`--B--`)
        annotation = str(cls.model_fields[name].annotation)  # type: ignore[attr-defined]
        if not annotation.startswith("list"):
            raise Rejected(400, f"no file: send one in the multipart field {name!r}")
        data[name] = []  # the endpoint answers an empty list with its own 400
    # Every field is checked above: skip pydantic's per-file validation and its temporary-file copy.
    return cls.model_construct(**data)  # type: ignore[attr-defined, no-any-return]


def read_upload(upload: Path | UploadFile) -> bytes:
    """The bytes of one uploaded file, as this parser delivers it (or a path, for in-process callers)."""
    if isinstance(upload, UploadFile):
        upload.file.seek(0)
        return upload.file.read()
    return Path(upload).read_bytes()


def install() -> None:
    MultipartSerde.parse_request = parse_uploads_only  # type: ignore[method-assign, assignment]
