"""``/v1/registry``: import a model radwatch did not train, and read registered versions.

``POST /v1/registry/models/{name}/versions`` takes a multipart upload: ``file`` (an ``.onnx``
file, a ``torch.export`` ``.pt2`` file, or a MONAI Bundle as a ``.zip``) and, for ``.onnx`` and
``.pt2``, ``spec`` (the spec as JSON or YAML text). A refused import registers nothing and
answers 422 with the one-line reason; a spec that differs from the name's registered versions
answers 409.
"""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from services.core.errors import BadRequestError, from_pipeline
from services.http.bodies import too_large
from services.http.deps import Anyone, Engineer, ModelName, SessionDep, StateDep
from services.http.errors import COMMON_RESPONSES, ErrorBody, Responses

router = APIRouter(tags=["registry"])

_SUFFIXES = (".onnx", ".pt2", ".zip")
_IMPORT: Responses = {
    400: {"model": ErrorBody, "description": "No file part, or an unsupported file type."},
    409: {"model": ErrorBody, "description": "The name exists with a different spec."},
    413: {"model": ErrorBody, "description": "Upload too large."},
    422: {"model": ErrorBody, "description": "The model or spec was refused; nothing registered."},
    **COMMON_RESPONSES,
}


class ImportedOut(BaseModel):
    name: str
    version: int
    spec: dict[str, Any]
    spec_sha256: str
    source_format: str
    source_sha256: str


class VersionOut(BaseModel):
    name: str
    version: int
    aliases: list[str]
    run_id: str
    description: str
    spec: dict[str, Any] = Field(description="The version's model spec (docs/models.md).")
    spec_sha256: str


@router.post(
    "/v1/registry/models/{name}/versions",
    status_code=201,
    response_model=ImportedOut,
    summary="Import a model (ONNX, torch.export .pt2, MONAI Bundle .zip) as a new version",
    responses=_IMPORT,
)
async def import_model(
    name: ModelName, request: Request, state: StateDep, session: SessionDep, who: Engineer
) -> ImportedOut:
    from pipelines.spec import SpecError, parse_spec
    from services.registry.imports import import_version

    limit = int(state.settings.max_upload_mb * 1024 * 1024)
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large(limit, "upload a smaller model")
    form = await request.form(max_files=1, max_fields=4, max_part_size=limit)
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise BadRequestError("Multipart upload has no 'file' part; send the model as 'file'.")
    suffix = FilePath(upload.filename).suffix.lower()
    if suffix not in _SUFFIXES:
        raise BadRequestError(
            f"'file' must end in one of {', '.join(_SUFFIXES)} (a MONAI Bundle as a .zip); got "
            f"{suffix or 'no suffix'}."
        )
    spec_text = form.get("spec")
    try:
        spec = parse_spec(spec_text) if isinstance(spec_text, str) and spec_text.strip() else None
    except SpecError as exc:
        raise from_pipeline(exc) from None
    with tempfile.TemporaryDirectory(prefix="radwatch-upload-") as tmp:
        path = FilePath(tmp) / f"model{suffix}"
        path.write_bytes(await upload.read())

        def run() -> ImportedOut:
            done = import_version(
                state.registry,
                name=name,
                source=path,
                spec=spec,
                session=session,
                actor=who.name,
            )
            return ImportedOut(
                name=done.name,
                version=done.version,
                spec=done.spec.model_dump(mode="json"),
                spec_sha256=done.spec.sha256(),
                source_format=done.source_format,
                source_sha256=done.source_sha256,
            )

        return await run_in_threadpool(run)


@router.get(
    "/v1/registry/models",
    response_model=list[str],
    summary="Names of the registered models",
    responses=COMMON_RESPONSES,
)
def list_models(state: StateDep, _: Anyone) -> list[str]:
    return state.registry.model_names()


@router.get(
    "/v1/registry/models/{name}/versions",
    response_model=list[VersionOut],
    summary="Every registered version of a model, with its spec",
    responses={404: {"model": ErrorBody, "description": "Unknown model."}, **COMMON_RESPONSES},
)
def list_versions(name: ModelName, state: StateDep, _: Anyone) -> list[VersionOut]:
    out = []
    for info in state.registry.list_versions(name):
        spec = state.registry.load_spec(name, info.version)
        out.append(
            VersionOut(
                name=info.name,
                version=info.version,
                aliases=list(info.aliases),
                run_id=info.run_id,
                description=info.description,
                spec=spec.model_dump(mode="json"),
                spec_sha256=spec.sha256(),
            )
        )
    return out
