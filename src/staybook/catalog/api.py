"""HTTP routes of the catalog context."""

from fastapi import APIRouter

router = APIRouter(tags=["catalog"])
