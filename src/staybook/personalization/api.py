"""HTTP routes of the personalization context."""

from fastapi import APIRouter

router = APIRouter(tags=["personalization"])
