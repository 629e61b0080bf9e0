"""The JSON API under /api/ (OpenAPI at /openapi.json), for per-client tokens."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api")
