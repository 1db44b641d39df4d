"""A local web page and REST API for vllm-fit (the ``web`` extra: fastapi, uvicorn, jinja2).

    vllm-fit web [--host 127.0.0.1] [--port 8000]

Imported only by ``vllm-fit web`` and the tests: the core never needs it.
"""

from __future__ import annotations


def create_app(cache_size: int = 256):
    from .app import create_app as _create

    return _create(cache_size=cache_size)


def serve(host: str = "127.0.0.1", port: int = 8000, cache_size: int = 256, access_log: bool = True) -> None:
    import uvicorn

    uvicorn.run(create_app(cache_size), host=host, port=port, access_log=access_log, log_level="info")
