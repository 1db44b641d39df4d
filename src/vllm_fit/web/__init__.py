"""A local web page and REST API for vllm-fit (the ``web`` extra: fastapi, uvicorn, jinja2).

    vllm-fit web [--host 127.0.0.1] [--port 8000]

Imported only by ``vllm-fit web`` and the tests: the core never needs it.
"""

from __future__ import annotations


def create_app(cache_size: int = 256):
    from .app import create_app as _create

    return _create(cache_size=cache_size)


def _warm_up() -> None:
    """Resolve a catalog model once (sources caches catalog resolution), import everything
    a plan needs and move the long-lived objects out of the GC's sight:
    a plan allocates tens of thousands of small objects, and full collections over the
    framework's heap were the slowest requests of the load test (benchmarks/web-load.md)."""
    import gc

    import vllm_fit
    from . import page
    vllm_fit.plan("Qwen/Qwen3-8B", gpu="H100", allow_hub=False).to_dict()
    page._env()
    page._choices()
    gc.collect()
    gc.freeze()


def serve(host: str = "127.0.0.1", port: int = 8000, cache_size: int = 256, access_log: bool = True) -> None:
    import uvicorn

    app = create_app(cache_size)
    _warm_up()
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level="info")
