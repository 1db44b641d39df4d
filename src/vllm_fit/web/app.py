"""The FastAPI application: REST under /api/ and a server-rendered page at /.

Bad input is a 4xx with one message (``VllmFitError`` → 422, body too large →
413, an optional module missing → 501); the page shows the same message in
place of the result.  CPU-bound handlers that finish in milliseconds (plan,
listings) run on the event loop; explain and sweep run in the thread pool so a
big log does not stall the page.
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from .. import __version__
from ..errors import VllmFitError
from . import service
from .service import AdviseRequest, ExplainRequest, PlanCache, PlanRequest, SweepRequest

JSON_OBJECT = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
ERRORS = {
    413: {"description": "Request body too large"},
    422: {"description": "Bad input: {detail: message}"},
}


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes (declared or streamed) with 413."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await _send_json(send, 413, {"detail": f"request body over {self.limit} bytes"})
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_json(send, 413, {"detail": f"request body over {self.limit} bytes"})


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, obj: dict) -> None:
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, default=str).encode(), status_code=status, media_type="application/json")


def _validation_message(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    where = loc[0] if loc else "input"
    value = err.get("input")
    shown = f" {str(value)[:60]!r}" if isinstance(value, (str, int, float)) else ""
    return f"{where}{shown}: {err.get('msg', 'invalid value')}"


def _optional_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def create_app(cache_size: int = 256) -> FastAPI:
    app = FastAPI(
        title="vllm-fit",
        # Swagger/ReDoc pages load their scripts from a CDN; a local tool serves the schema only
        docs_url=None,
        redoc_url=None,
        version=__version__,
        description="Predict vLLM's start-up GPU memory offline. Every answer is computed locally; "
                    "the Hugging Face hub is only reached for requests that set online=true.",
    )
    app.add_middleware(BodyLimit, limit=service.MAX_BODY_BYTES)
    cache = PlanCache(cache_size)

    @app.exception_handler(VllmFitError)
    async def _bad_input(request: Request, exc: VllmFitError):
        return JSONResponse({"detail": exc.message, "error": type(exc).__name__}, status_code=422)

    # ------------------------------------------------------------ REST

    def plan_json(req: Any) -> tuple[bytes, Any]:
        key = service.request_key(req)
        hit = cache.get(key)
        if hit is None:
            p = service.run_plan(req)
            hit = (json.dumps(p.to_dict()).encode(), p)
            cache.put(key, hit)
        return hit

    @app.post("/api/plan", responses={200: JSON_OBJECT, **ERRORS}, tags=["plan"],
              summary="Plan one vllm serve start-up (the object of `vllm-fit plan --json`)")
    async def api_plan(req: PlanRequest = Body(...)) -> Response:  # type: ignore[valid-type]
        t0 = time.perf_counter()
        body, _ = plan_json(req)
        # Server-Timing: the planner's own share of the latency (benchmarks/web_load.py reads it)
        return Response(body, media_type="application/json",
                        headers={"server-timing": f"plan;dur={(time.perf_counter() - t0) * 1000:.2f}"})

    explain_body = {"required": True, "content": {
        "application/json": {"schema": ExplainRequest.model_json_schema()},
        "text/plain": {"schema": {"type": "string", "maxLength": service.MAX_LOG_CHARS}},
    }}

    @app.post("/api/explain", responses={200: JSON_OBJECT, **ERRORS}, tags=["explain"],
              openapi_extra={"requestBody": explain_body},
              summary="Read a vLLM start-up log (JSON {log} or the text itself); compare it with the plan "
                      "of the same configuration")
    async def api_explain(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        raw = await request.body()
        if request.headers.get("content-type", "").split(";")[0].strip() == "text/plain":
            text = raw.decode("utf-8", errors="replace")
            if len(text) > service.MAX_LOG_CHARS:
                return _json({"detail": f"the log is over {service.MAX_LOG_CHARS} characters"}, 422)
            req = ExplainRequest(log=text, online=request.query_params.get("online") in ("1", "true", "on"))
        else:
            try:
                req = ExplainRequest.model_validate_json(raw)
            except ValidationError as e:
                return _json({"detail": e.errors(include_url=False)}, 422)
        return _json(await run_in_threadpool(service.run_explain, req))

    @app.post("/api/advise", responses={200: JSON_OBJECT, **ERRORS}, tags=["advise"],
              summary="What to change so vLLM starts and serves concurrency x context (vllm_fit.advise)")
    def api_advise(req: AdviseRequest = Body(...)) -> Response:  # type: ignore[valid-type]
        if _optional_module("vllm_fit.advise") is None:
            return _json({"detail": "advice needs the module vllm_fit.advise, which this build does not have"}, 501)
        return _json(service.run_advise(req))

    @app.post("/api/sweep", responses={200: JSON_OBJECT, **ERRORS}, tags=["sweep"],
              summary=f"Plan a grid of configurations, at most {service.MAX_SWEEP_CONFIGS} (vllm_fit.sweep)")
    def api_sweep(req: SweepRequest = Body(...)) -> Response:  # type: ignore[valid-type]
        if _optional_module("vllm_fit.sweep") is None:
            return _json({"detail": "sweeps need the module vllm_fit.sweep, which this build does not have"}, 501)
        return _json(service.run_sweep(req))

    @app.get("/api/models", responses={200: {"description": "OK"}}, tags=["catalog"], summary="The bundled model catalog")
    async def api_models(search: str | None = Query(None, max_length=200)) -> Response:
        return _json(service.list_models(search))

    @app.get("/api/gpus", tags=["catalog"], summary="The GPU catalog (total memory as CUDA reports it)")
    async def api_gpus() -> Response:
        return _json(service.list_gpus())

    @app.get("/api/versions", tags=["catalog"], summary="The vLLM versions vllm-fit models")
    async def api_versions() -> Response:
        return _json(service.list_versions())

    # ------------------------------------------------------------ page

    from . import page

    def page_request(request: Request) -> tuple[dict[str, str], Any, str | None]:
        """Query string → (form values, PlanRequest or None, error)."""
        raw = {k: v for k, v in parse_qsl(request.url.query, keep_blank_values=False) if v.strip()}
        known = set(PlanRequest.model_fields)
        values = {k: v for k, v in raw.items() if k in known}
        if not any(k in values for k in ("model", "command", "config_json")):
            return raw, None, None
        try:
            return raw, PlanRequest.model_validate(values), None
        except ValidationError as e:
            return raw, None, _validation_message(e)

    def result_html(request: Request) -> tuple[dict[str, str], str]:
        values, req, error = page_request(request)
        if req is None:
            return values, page.render_result(None, None, error, values)
        try:
            _, plan = plan_json(req)
        except VllmFitError as e:
            return values, page.render_result(None, req, e.message, values)
        deployment = service.run_deploy(req) if plan.fits and _optional_module("vllm_fit.deploy") else None
        return values, page.render_result(plan, req, None, values, deployment)

    def advice_html(values: dict[str, str]) -> str:
        known = set(AdviseRequest.model_fields)
        try:
            req = AdviseRequest.model_validate({k: v for k, v in values.items() if k in known})
            return page.render_advice(service.run_advise(req), None)
        except ValidationError as e:
            return page.render_advice(None, _validation_message(e))
        except VllmFitError as e:
            return page.render_advice(None, e.message)

    def sweep_html(values: dict[str, str]) -> str:
        try:
            req = PlanRequest.model_validate({k: v for k, v in values.items() if k in PlanRequest.model_fields})
            model, flags, own = service.plan_arguments(req)
            body: dict[str, Any] = {"model": model, "config_json": req.config_json, "online": req.online,
                                    "vllm_version": own["vllm_version"], "gpu_memory_gib": own["gpu_memory_gib"],
                                    "plots": True, "gpu": own["gpu"], **flags}
            for axis in service._SWEEP_AXES:
                text = values.get("sweep_" + axis, "")
                items = [t.strip() for t in text.split(",") if t.strip()]
                if items:
                    body[axis] = items
            req = SweepRequest.model_validate({k: v for k, v in body.items() if v is not None})
            return page.render_sweep(service.run_sweep(req), None)
        except ValidationError as e:
            return page.render_sweep(None, _validation_message(e))
        except VllmFitError as e:
            return page.render_sweep(None, e.message)

    def has_model(values: dict[str, str]) -> bool:
        return any(values.get(k) for k in ("model", "command", "config_json"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        values, result = result_html(request)
        advice = advice_html(values) if has_model(values) and (values.get("concurrency") or values.get("context")) else ""
        sweep = sweep_html(values) if has_model(values) and any(k.startswith("sweep_") for k in values) else ""
        return HTMLResponse(page.render_page(values, result, advice, sweep))

    @app.get("/ui/plan", response_class=HTMLResponse, include_in_schema=False)
    async def ui_plan(request: Request) -> HTMLResponse:
        _, result = result_html(request)
        return HTMLResponse(result)

    @app.get("/ui/advise", response_class=HTMLResponse, include_in_schema=False)
    def ui_advise(request: Request) -> HTMLResponse:
        values, _, _ = page_request(request)
        if not has_model(values):
            return HTMLResponse(page.render_advice(None, "pick a model first"))
        return HTMLResponse(advice_html(values))

    @app.get("/ui/sweep", response_class=HTMLResponse, include_in_schema=False)
    def ui_sweep(request: Request) -> HTMLResponse:
        values, _, _ = page_request(request)
        if not has_model(values):
            return HTMLResponse(page.render_sweep(None, "pick a model first"))
        return HTMLResponse(sweep_html(values))

    @app.post("/ui/explain", response_class=HTMLResponse, include_in_schema=False)
    async def ui_explain(request: Request) -> HTMLResponse:
        raw = await request.body()
        text = raw.decode("utf-8", errors="replace")
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(text, keep_blank_values=True))
            text = form.get("log", "")
            online = form.get("online") in ("on", "true", "1")
        else:
            online = request.query_params.get("online") in ("on", "true", "1")
        if not text.strip():
            return HTMLResponse(page.render_explain(None, "paste a vLLM log first"))
        try:
            from starlette.concurrency import run_in_threadpool

            result = await run_in_threadpool(service.run_explain, ExplainRequest(log=text[: service.MAX_LOG_CHARS],
                                                                                 online=online))
        except VllmFitError as e:
            return HTMLResponse(page.render_explain(None, e.message))
        return HTMLResponse(page.render_explain(result, None))

    return app
