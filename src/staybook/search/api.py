"""HTTP routes of the search context."""

from fastapi import APIRouter

router = APIRouter(tags=["search"])
