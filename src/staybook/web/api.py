"""Server-rendered pages (mounted at the site root, not under /api/v1)."""

from fastapi import APIRouter

router = APIRouter(tags=["web"])
