"""The explorer's web app: Starlette routes over an ``Explorer``, and the page's static files.

Every route is documented (OpenAPI 3 at ``/api/openapi.json``, built from the docstrings below;
a route table in docs/explorer.md). Errors are JSON ``{"error": message}`` with a 4xx status:
400 bad input (out-of-range unit, bad values, path traversal), 404 unknown image or path,
413 oversized body, 415 not a PNG/JPEG. Only the files listed in ``static/`` when the app starts
are served, by exact name: no path ever reaches the file system.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from diffdrl.explore.overlays import data_url
from diffdrl.explore.request_body import (
    SECURITY_HEADERS,
    RequestError,
    error_response,
    read_body,
    read_json,
)
from diffdrl.explore.session import Explorer
from diffdrl.explore.uploads import UploadError, encode_png

STATIC = Path(__file__).parent / "static"
STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.(html|js|css|png|svg|ico)")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "png": "image/png",
    "svg": "image/svg+xml",
    "ico": "image/x-icon",
}
SAMPLING = {"sampler": False, "steps": False, "seed": False, "start": False}


def _explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def _file(request: Request, name: str) -> Response:
    return Response(
        request.app.state.static[name],
        media_type=CONTENT_TYPES[name.rsplit(".", 1)[1]],
        headers=SECURITY_HEADERS,
    )


async def index(request: Request) -> Response:
    """
    summary: The explorer page.
    responses:
      200: {description: index.html}
    """
    return _file(request, "index.html")


async def static_file(request: Request) -> Response:
    """
    summary: One of the page's static files, by exact name (no sub-folders).
    parameters:
      - {name: name, in: path, required: true, schema: {type: string}}
    responses:
      200: {description: the file}
      400: {description: a path that tries to leave the static folder}
      404: {description: no such static file}
    """
    name = request.path_params["name"]
    if any(part in name for part in ("..", "/", "\\", "\x00", ":")) or name.startswith("~"):
        raise RequestError(f"path traversal refused: {name!r} (static files are served by name only)")
    static = request.app.state.static
    if name not in static:
        raise RequestError(f"no static file {name!r} (files: {', '.join(sorted(static))})", 404)
    return _file(request, name)


async def openapi(request: Request) -> Response:
    """
    summary: This API's OpenAPI 3 description.
    responses:
      200: {description: the schema}
    """
    return JSONResponse(SCHEMAS.get_schema(routes=request.app.routes))


async def info(request: Request) -> Response:
    """
    summary: The run, its units (label, slider range, DyGA anchors), factors and sampling options.
    responses:
      200: {description: "{run, model, dataset, resolution, num_units, diffusion, samplers, sampler,
        steps, starts, start, factors: [{name, size}], attention,
        units: [{index, label, low, high, median, anchors}]}"}
    """
    return JSONResponse(_explorer(request).info())


async def status(request: Request) -> Response:
    """
    summary: What the model worker is doing (waiting jobs, current batch), for progress indicators.
    responses:
      200: {description: "{waiting, busy_seconds, busy_images, batches, rendered, cache_hits, inverted,
        cached}"}
    """
    return JSONResponse(_explorer(request).queue.status())


async def random_image(request: Request) -> Response:
    """
    summary: A random image of the run's dataset.
    requestBody:
      content: {application/json: {schema: {type: object, properties: {seed: {type: integer}}}}}
    responses:
      200: {description: "{image_id, png (data URL), values (its slider values), factors, source}"}
    """
    body = await read_json(request, {"seed": False})
    image = await run_in_threadpool(_explorer(request).random_image, body.get("seed", 0))
    return JSONResponse(_explorer(request).describe(image))


async def factor_image(request: Request) -> Response:
    """
    summary: The dataset image with the given factor values (datasets with factors only).
    requestBody:
      content: {application/json: {schema: {type: object, required: [factors],
        properties: {factors: {type: array, items: {type: integer}}}}}}
    responses:
      200: {description: as /api/images/random}
      400: {description: wrong number of factors or a value out of range}
    """
    body = await read_json(request, {"factors": True})
    image = await run_in_threadpool(_explorer(request).factor_image, body["factors"])
    return JSONResponse(_explorer(request).describe(image))


async def upload(request: Request) -> Response:
    """
    summary: Upload an image (the raw bytes of a PNG or JPEG file as the body), resized as the run's data.
    requestBody:
      content: {image/png: {schema: {type: string, format: binary}}, image/jpeg: {schema: {type: string,
        format: binary}}}
    responses:
      200: {description: as /api/images/random}
      413: {description: over the byte or pixel limit}
      415: {description: not a PNG or JPEG image}
    """
    data = await read_body(request, _explorer(request).max_upload_bytes)
    image = await run_in_threadpool(_explorer(request).upload, data)
    return JSONResponse(_explorer(request).describe(image))


async def image_png(request: Request) -> Response:
    """
    summary: The PNG of a stored image.
    parameters:
      - {name: image_id, in: path, required: true, schema: {type: string, pattern: "^[0-9a-f]{16}$"}}
    responses:
      200: {description: image/png}
      400: {description: malformed id (e.g. a path)}
      404: {description: unknown image}
    """
    image = _explorer(request).image(request.path_params["image_id"])
    return Response(encode_png(image.pixels), media_type="image/png", headers=SECURITY_HEADERS)


async def render(request: Request) -> Response:
    """
    summary: Regenerate an image from its units, with the sliders at `values` when given, from its
      DDIM inversion (start "inversion", the default; inverted once per image and steps) or from
      noise drawn from `seed` (start "noise").
    requestBody:
      content: {application/json: {schema: {type: object, required: [image_id], properties: {
        image_id: {type: string}, values: {type: array, items: {type: number}},
        sampler: {type: string}, steps: {type: integer}, seed: {type: integer},
        start: {type: string, enum: [noise, inversion]}}}}}
    responses:
      200: {description: "{png (data URL), ms, psnr (dB against the image)}"}
      400: {description: bad values, sampler, steps or start}
      404: {description: unknown image}
    """
    body = await read_json(request, {"image_id": True, "values": False, **SAMPLING})
    explorer, start = _explorer(request), time.perf_counter()
    png = await run_in_threadpool(
        explorer.render,
        body["image_id"],
        body.get("values"),
        body.get("sampler"),
        body.get("steps"),
        body.get("seed", 0),
        body.get("start"),
    )
    ms = round(1000 * (time.perf_counter() - start), 1)
    psnr = round(explorer.psnr(body["image_id"], png), 2)
    return JSONResponse({"png": data_url(png), "ms": ms, "psnr": psnr})


async def swap(request: Request) -> Response:
    """
    summary: The source image with one unit (an index, or "all") taken from the target.
    requestBody:
      content: {application/json: {schema: {type: object, required: [source_id, target_id, unit],
        properties: {source_id: {type: string}, target_id: {type: string},
        unit: {oneOf: [{type: integer}, {type: string, enum: [all]}]},
        sampler: {type: string}, steps: {type: integer}, seed: {type: integer},
        start: {type: string, enum: [noise, inversion]}}}}}
    responses:
      200: {description: "{png (data URL), ms}"}
      400: {description: unit index out of range}
    """
    body = await read_json(request, {"source_id": True, "target_id": True, "unit": True, **SAMPLING})
    start = time.perf_counter()
    png = await run_in_threadpool(
        _explorer(request).swap,
        body["source_id"],
        body["target_id"],
        body["unit"],
        body.get("sampler"),
        body.get("steps"),
        body.get("seed", 0),
        body.get("start"),
    )
    return JSONResponse({"png": data_url(png), "ms": round(1000 * (time.perf_counter() - start), 1)})


async def strip(request: Request) -> Response:
    """
    summary: A traversal strip of one unit over its observed 2%-98% quantiles.
    requestBody:
      content: {application/json: {schema: {type: object, required: [image_id, unit], properties: {
        image_id: {type: string}, unit: {type: integer}, count: {type: integer},
        sampler: {type: string}, steps: {type: integer}, seed: {type: integer},
        start: {type: string, enum: [noise, inversion]}}}}}
    responses:
      200: {description: "{unit, values, pngs (data URLs)}"}
      400: {description: unit index out of range, or a bad count}
    """
    body = await read_json(request, {"image_id": True, "unit": True, "count": False, **SAMPLING})
    result = await run_in_threadpool(
        _explorer(request).strip,
        body["image_id"],
        body["unit"],
        body.get("count", 8),
        body.get("sampler"),
        body.get("steps"),
        body.get("seed", 0),
        body.get("start"),
    )
    return JSONResponse(result)


async def attention(request: Request) -> Response:
    """
    summary: Each token's cross-attention over the image, as RGBA overlays (models with cross-attention).
    requestBody:
      content: {application/json: {schema: {type: object, required: [image_id], properties: {
        image_id: {type: string}, seed: {type: integer}}}}}
    responses:
      200: {description: "{maps: one data URL per unit}"}
      400: {description: the model has no per-token cross-attention}
    """
    body = await read_json(request, {"image_id": True, "seed": False})
    maps = await run_in_threadpool(_explorer(request).attention, body["image_id"], body.get("seed", 0))
    return JSONResponse({"maps": maps})


async def on_error(request: Request, err: Exception) -> Response:
    if isinstance(err, (RequestError, UploadError)):
        return error_response(err.status, str(err))
    if isinstance(err, KeyError):
        return error_response(404, str(err.args[0]) if err.args else "not found")
    if isinstance(err, HTTPException):
        message = "no such route" if err.status_code == 404 else str(err.detail)
        return error_response(err.status_code, f"{message}: {request.method} {request.url.path}")
    return error_response(400, str(err))


async def on_crash(request: Request, err: Exception) -> Response:
    return error_response(500, f"internal error: {type(err).__name__}: {err}")


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/static/{name:path}", static_file, methods=["GET"]),
    Route("/api/openapi.json", openapi, methods=["GET"], include_in_schema=False),
    Route("/api/info", info, methods=["GET"]),
    Route("/api/status", status, methods=["GET"]),
    Route("/api/images/random", random_image, methods=["POST"]),
    Route("/api/images/factors", factor_image, methods=["POST"]),
    Route("/api/images/upload", upload, methods=["POST"]),
    Route("/api/images/{image_id:path}", image_png, methods=["GET"]),
    Route("/api/render", render, methods=["POST"]),
    Route("/api/swap", swap, methods=["POST"]),
    Route("/api/strip", strip, methods=["POST"]),
    Route("/api/attention", attention, methods=["POST"]),
]
HANDLERS = {ValueError: on_error, TypeError: on_error, KeyError: on_error, HTTPException: on_error}
SCHEMAS = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "diffdrl explorer", "version": "1"}})


def create_app(explorer: Explorer) -> Starlette:
    """The Starlette app serving ``explorer`` (close the explorer when done with the app)."""
    app = Starlette(routes=ROUTES, exception_handlers={**HANDLERS, Exception: on_crash})
    app.state.explorer = explorer
    app.state.static = {
        p.name: p.read_bytes() for p in STATIC.iterdir() if p.is_file() and STATIC_NAME.fullmatch(p.name)
    }
    return app
