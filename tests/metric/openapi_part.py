"""The embed and graph part of /openapi.json: our paths and every schema they reference.

`python -m tests.metric.openapi_part` rewrites the committed snapshot (openapi_snapshot.json).
"""

from __future__ import annotations

import json
from pathlib import Path

SNAPSHOT = Path(__file__).with_name("openapi_snapshot.json")
PATHS = ("/v1/embed", "/v1/similar", "/v1/graph/classify")


def part(spec: dict) -> dict:
    paths = {p: spec["paths"][p] for p in PATHS}
    schemas, todo = {}, [json.dumps(paths)]
    while todo:
        text = todo.pop()
        for name in spec["components"]["schemas"]:
            if f'"#/components/schemas/{name}"' in text and name not in schemas:
                schemas[name] = spec["components"]["schemas"][name]
                todo.append(json.dumps(schemas[name]))
    return {"paths": paths, "schemas": dict(sorted(schemas.items()))}


if __name__ == "__main__":
    from services.serve.app import make_fastapi

    SNAPSHOT.write_text(json.dumps(part(make_fastapi().openapi()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
