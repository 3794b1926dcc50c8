"""HTTP routes of the identity context."""

from fastapi import APIRouter

router = APIRouter(tags=["identity"])
