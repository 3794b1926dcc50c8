"""Builds the catalog context's parts for one process: the media store photos are kept in.

`lifespan(runtime)` yields `CatalogDeps`; the composition root hands it to the
subscriptions below and to routes (`context_dependency("catalog")`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from staybook.catalog import service
from staybook.catalog.events import PhotoUploaded
from staybook.catalog.media import MediaStore, media_store
from staybook.kernel.consumers import Subscription
from staybook.kernel.db import UnitOfWork
from staybook.kernel.events import EventEnvelope
from staybook.kernel.runtime import Runtime, context_dependency
from staybook.kernel.settings import Settings


@dataclass(frozen=True)
class CatalogDeps:
    media: MediaStore
    settings: Settings


CatalogDep = Annotated[CatalogDeps, Depends(context_dependency("catalog"))]


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime) -> AsyncIterator[CatalogDeps]:
    store = media_store(runtime.settings.catalog)
    try:
        yield CatalogDeps(store, runtime.settings)
    finally:
        await store.close()


async def on_photo_uploaded(envelope: EventEnvelope, uow: UnitOfWork, deps: CatalogDeps) -> None:
    await service.make_photo_variants(deps.media, uow, envelope.payload, deps.settings)


SUBSCRIPTIONS = [Subscription("catalog.photo-variants", PhotoUploaded.subject(), on_photo_uploaded)]
