"""JSON responses with a strong `ETag`, `If-None-Match` -> 304, and caching suited to read models.

The ETag is a digest of the exact body bytes, so equal representations share it across replicas
and restarts. Read models change whenever the projector commits, and answers depend on the
caller's token, so caches may keep a copy but must revalidate every time (`private, no-cache`);
a revalidation that matches costs the client no body.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from fastapi import Response

CACHE_CONTROL = "private, no-cache"
VARY = "Authorization, X-Consistency-Token"
JSON_MEDIA_TYPE = "application/json"


def entity_tag(body: bytes) -> str:
    digest = hashlib.sha256(body).digest()[:18]
    return '"' + base64.urlsafe_b64encode(digest).decode("ascii") + '"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison, as `If-None-Match` requires: `W/` prefixes do not matter."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (c.strip().removeprefix("W/") for c in if_none_match.split(","))
    return etag in candidates


def encode_json(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def cached_json(body: bytes, *, if_none_match: str | None, headers: dict[str, str]) -> Response:
    """200 with the JSON body, or 304 (same validators, no body) when the client's copy is current."""
    etag = entity_tag(body)
    all_headers = {**headers, "ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": VARY}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=all_headers)
    return Response(body, media_type=JSON_MEDIA_TYPE, headers=all_headers)
