"""HTTP routes of the inventory context."""

from fastapi import APIRouter

router = APIRouter(tags=["inventory"])
