"""HTTP routes of the booking context."""

from fastapi import APIRouter

router = APIRouter(tags=["booking"])
