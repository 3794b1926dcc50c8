"""The admin pages."""

from __future__ import annotations

from fastapi import APIRouter

from staybook.web.rendering import WebRoute

router = APIRouter(include_in_schema=False, route_class=WebRoute)
