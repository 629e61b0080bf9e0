"""The JSON API under /api/ (OpenAPI at /openapi.json), for per-client tokens.

Modules: api_common (tokens, roles, error bodies), api_models (every body), api_reads (patrons,
notices, the day), api_actions (resend, cancel, retry, confirm, requests report, edit), api_push
(facts pushed by the library system)."""
from __future__ import annotations

from fastapi import APIRouter

from adapters.web import api_actions, api_push, api_reads

router = APIRouter(prefix="/api")
router.include_router(api_reads.router)
router.include_router(api_actions.router)
router.include_router(api_push.router)
