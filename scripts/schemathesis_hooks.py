"""Schemathesis hooks for Herald's API (loaded by scripts/schemathesis).

The user import takes JSON lines (application/x-ndjson), a media type schemathesis has
no serializer for: a generated string is sent as it is, anything else as JSON lines.
"""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def json_lines(ctx, value):
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode()
    return (json.dumps(value) + "\n").encode()


@schemathesis.hook
def filter_case(ctx, case):
    """A raw body (JSON lines, CSV) is a string on the wire whatever was generated: a case
    that means to send some other type (null among them, which goes out as an empty body,
    a valid empty import) cannot, so it is not sent."""
    raw = case.media_type in ("application/x-ndjson", "text/csv")
    return not raw or isinstance(case.body, str)
