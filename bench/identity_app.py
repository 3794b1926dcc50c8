"""The staybook app plus one benchmark route, to price token verification on a cached read.

`GET /bench/cached-read` takes an optional bearer token (the kernel's `optional_principal`,
the same verification every authenticated route runs) and answers from the runtime cache.
Called with and without a token in the same run, the difference is what authentication costs.

    uvicorn --factory bench.identity_app:create_app
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import ORJSONResponse

from staybook.app import create_app as create_staybook_app
from staybook.kernel.security import Principal, optional_principal


def create_app():
    app = create_staybook_app()

    async def load_value() -> dict:
        return {"cities": ["Amsterdam", "Lisboa", "Kyoto"], "version": 1}

    @app.get("/bench/cached-read", include_in_schema=False)
    async def cached_read(request: Request, principal: Principal | None = Depends(optional_principal)):
        value = await request.app.state.runtime.cache.get_or_load("bench:cached-read", 300, load_value)
        return ORJSONResponse({"value": value, "user": str(principal.user_id) if principal else None})

    return app
