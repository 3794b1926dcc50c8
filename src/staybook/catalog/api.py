"""HTTP routes of the catalog context."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Response, UploadFile, status
from fastapi.responses import FileResponse, RedirectResponse

from staybook.catalog import service
from staybook.catalog.bootstrap import CatalogDep
from staybook.catalog.media import IMMUTABLE, PUBLIC_MEDIA_PREFIX, LocalMediaStore, published_variant_key
from staybook.catalog.schemas import (
    PhotoOut,
    PropertyCreate,
    PropertyOut,
    PropertyPage,
    PropertyUpdate,
    RoomTypeCreate,
    RoomTypeOut,
    RoomTypeUpdate,
)
from staybook.inventory import service as inventory
from staybook.kernel import openapi
from staybook.kernel.errors import NotFound
from staybook.kernel.runtime import Runtime, get_runtime
from staybook.kernel.security import Principal, require_role

router = APIRouter(tags=["catalog"])

Host = Annotated[Principal, Depends(require_role("host", "admin"))]
RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.post(
    "/properties",
    status_code=status.HTTP_201_CREATED,
    response_model=PropertyOut,
    responses=openapi.created("property"),
)
async def create_property(body: PropertyCreate, principal: Host, runtime: RuntimeDep, response: Response):
    created = await service.create_property(runtime, principal, body)
    response.headers["Location"] = f"/api/v1/properties/{created.id}"
    return created


@router.get("/properties/{property_id}", response_model=PropertyOut)
async def get_property(property_id: uuid.UUID, runtime: RuntimeDep) -> Response:
    return Response(await service.property_document(runtime, property_id), media_type="application/json")


@router.patch("/properties/{property_id}", response_model=PropertyOut)
async def update_property(property_id: uuid.UUID, body: PropertyUpdate, principal: Host, runtime: RuntimeDep):
    return await service.update_property(runtime, principal, property_id, body)


@router.delete("/properties/{property_id}", status_code=status.HTTP_204_NO_CONTENT)
async def archive_property(property_id: uuid.UUID, principal: Host, runtime: RuntimeDep) -> Response:
    await service.archive_property(runtime, principal, property_id)
    await inventory.invalidate_availability(runtime, property_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/hosts/me/properties", response_model=PropertyPage)
async def my_properties(
    principal: Host,
    runtime: RuntimeDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
):
    return await service.host_properties(runtime, principal, cursor=cursor, limit=limit)


@router.post(
    "/properties/{property_id}/room-types",
    status_code=status.HTTP_201_CREATED,
    response_model=RoomTypeOut,
    responses=openapi.created("room type"),
)
async def create_room_type(
    property_id: uuid.UUID, body: RoomTypeCreate, principal: Host, runtime: RuntimeDep, response: Response
):
    created = await service.create_room_type(runtime, principal, property_id, body)
    await inventory.invalidate_availability(runtime, property_id)
    response.headers["Location"] = f"/api/v1/room-types/{created.id}"
    return created


@router.get("/properties/{property_id}/room-types", response_model=list[RoomTypeOut])
async def list_room_types(property_id: uuid.UUID, runtime: RuntimeDep):
    return await service.list_room_types(runtime, property_id)


@router.get("/room-types/{room_type_id}", response_model=RoomTypeOut)
async def get_room_type(room_type_id: uuid.UUID, runtime: RuntimeDep):
    return await service.get_room_type(runtime, room_type_id)


@router.patch("/room-types/{room_type_id}", response_model=RoomTypeOut)
async def update_room_type(room_type_id: uuid.UUID, body: RoomTypeUpdate, principal: Host, runtime: RuntimeDep):
    updated = await service.update_room_type(runtime, principal, room_type_id, body)
    await inventory.invalidate_availability(runtime, updated.property_id)
    return updated


@router.delete("/room-types/{room_type_id}", status_code=status.HTTP_204_NO_CONTENT)
async def archive_room_type(room_type_id: uuid.UUID, principal: Host, runtime: RuntimeDep) -> Response:
    await service.archive_room_type(runtime, principal, room_type_id)
    room_type = await service.get_room_type(runtime, room_type_id)
    await inventory.invalidate_availability(runtime, room_type.property_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/properties/{property_id}/photos", status_code=status.HTTP_202_ACCEPTED, response_model=PhotoOut)
async def upload_photo(
    property_id: uuid.UUID,
    principal: Host,
    runtime: RuntimeDep,
    deps: CatalogDep,
    file: Annotated[UploadFile, File(description="A JPEG, PNG or WebP photo")],
):
    """Accepted for processing: variants appear in GET .../photos once the worker has made them."""
    data = await file.read(runtime.settings.catalog.max_photo_bytes + 1)
    return await service.upload_photo(runtime, principal, property_id, data, store=deps.media)


@router.get("/properties/{property_id}/photos", response_model=list[PhotoOut])
async def list_photos(property_id: uuid.UUID, runtime: RuntimeDep):
    return await service.list_photos(runtime, property_id)


@router.get("/media/{key:path}", include_in_schema=False)
async def media(key: str, runtime: RuntimeDep, deps: CatalogDep):
    """Serves photo variants: from the local media directory, or by redirect to a presigned URL of the
    S3 bucket. Originals (with their EXIF) are never served: the key is checked against the variant
    key grammar first, and the file must resolve inside the photos/ folder."""
    key = published_variant_key(key)
    store = deps.media
    if isinstance(store, LocalMediaStore):
        path = store.path(key, within=PUBLIC_MEDIA_PREFIX)
        if not path.is_file():
            raise NotFound("No media at this path")
        return FileResponse(path, headers={"Cache-Control": IMMUTABLE})
    # The redirect may be cached only while its signature is valid (and by the client alone).
    seconds = max(0, runtime.settings.catalog.s3_presign_seconds - 60)
    return RedirectResponse(
        await store.download_url(key), status_code=307, headers={"Cache-Control": f"private, max-age={seconds}"}
    )
