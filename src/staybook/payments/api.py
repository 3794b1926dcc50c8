"""HTTP routes of the payments context."""

from fastapi import APIRouter

router = APIRouter(tags=["payments"])
