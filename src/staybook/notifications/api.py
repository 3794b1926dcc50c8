"""HTTP routes of the notifications context."""

from fastapi import APIRouter

router = APIRouter(tags=["notifications"])
