"""The ``vllm-fit`` command line (typer).

Exit codes: 0 = vLLM starts, 1 = vLLM would fail (its message is shown),
2 = bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer

from .errors import VllmFitError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Predict vLLM's start-up GPU memory, offline.")


_OWN_WITH_VALUE = ("--gpu", "--gpu-memory-gib", "--free-memory-gib", "--vllm-version", "--config")


def _split_own_options(cmd: list[str]) -> tuple[dict[str, str], list[str]]:
    """vllm-fit's own options may follow the `vllm serve ...` line after `--`."""
    own: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(cmd):
        name, eq, val = cmd[i].partition("=")
        if name in _OWN_WITH_VALUE:
            if eq:
                own[name] = val
            elif i + 1 < len(cmd):
                own[name] = cmd[i + 1]
                i += 1
            i += 1
            continue
        if name == "--json":
            own["--json"] = "1"
            i += 1
            continue
        rest.append(cmd[i])
        i += 1
    return own, rest


def _fail(message: str) -> None:
    typer.echo(f"vllm-fit: error: {message}", err=True)
    raise typer.Exit(2)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": False},
    help="Plan a vLLM start-up: `vllm-fit plan MODEL --gpu H100 [vLLM flags]` or `vllm-fit plan -- vllm serve MODEL ...`.",
)
def plan(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="Catalog name (qwen3-8b, Qwen/Qwen3-8B), a config.json or model folder, or a hub id."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU from `vllm-fit gpus` (default H100)."),
    gpu_memory_gib: Optional[float] = typer.Option(None, "--gpu-memory-gib", help="Total memory CUDA reports, for any other GPU."),
    free_memory_gib: Optional[float] = typer.Option(None, "--free-memory-gib", help="Free memory at start, if other processes use the GPU."),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="vLLM release, 0.11.0 to 0.33.0 (default 0.33.0)."),
    config: Optional[str] = typer.Option(None, "--config", help="A config.json or model folder to use instead of the catalog."),
    tensor_parallel_size: Optional[int] = typer.Option(None, "--tensor-parallel-size", "-tp"),
    pipeline_parallel_size: Optional[int] = typer.Option(None, "--pipeline-parallel-size", "-pp"),
    data_parallel_size: Optional[int] = typer.Option(None, "--data-parallel-size", "-dp"),
    max_model_len: Optional[str] = typer.Option(None, "--max-model-len", help="Tokens (1k, 32K, or -1 to auto-fit)."),
    gpu_memory_utilization: Optional[float] = typer.Option(None, "--gpu-memory-utilization"),
    block_size: Optional[int] = typer.Option(None, "--block-size"),
    kv_cache_dtype: Optional[str] = typer.Option(None, "--kv-cache-dtype"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    quantization: Optional[str] = typer.Option(None, "--quantization", "-q"),
    max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs"),
    max_num_batched_tokens: Optional[str] = typer.Option(None, "--max-num-batched-tokens"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager"),
    enable_prefix_caching: Optional[bool] = typer.Option(None, "--enable-prefix-caching/--no-enable-prefix-caching"),
    kv_cache_memory_bytes: Optional[str] = typer.Option(None, "--kv-cache-memory-bytes", "--kv-cache-memory"),
    num_gpu_blocks_override: Optional[int] = typer.Option(None, "--num-gpu-blocks-override"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    import vllm_fit
    from .report import render_plan
    from .serve_args import human_readable_int, parse_serve_command

    try:
        flags: dict = {}
        extra = list(ctx.args)
        if extra:
            if extra[0] in ("vllm", "serve") or model in ("vllm", "serve"):
                cmd = ([model] if model else []) + extra
                own, cmd = _split_own_options(cmd)
                gpu = own.get("--gpu", gpu)
                vllm_version = own.get("--vllm-version", vllm_version)
                config = own.get("--config", config)
                as_json = as_json or "--json" in own
                try:
                    if "--gpu-memory-gib" in own:
                        gpu_memory_gib = float(own["--gpu-memory-gib"])
                    if "--free-memory-gib" in own:
                        free_memory_gib = float(own["--free-memory-gib"])
                except ValueError:
                    _fail("--gpu-memory-gib / --free-memory-gib need a number of GiB")
                m, flags, ignored = parse_serve_command(cmd)
                model = m
            else:
                _fail(f"unexpected arguments: {' '.join(extra)[:200]}")
        elif model in ("vllm",):
            _fail("give the whole command after `--`, e.g. vllm-fit plan -- vllm serve Qwen/Qwen3-8B --max-model-len 8192")

        def hint(v: Optional[str], name: str) -> Optional[int]:
            if v is None:
                return None
            if name == "--max-model-len" and v.strip() in ("-1", "auto"):
                return -1
            try:
                return human_readable_int(v)
            except ValueError:
                _fail(f"{name} {v!r} is not an integer (examples: 8192, 8k, 32K)")
                return None

        cli_flags = dict(
            tensor_parallel_size=tensor_parallel_size,
            pipeline_parallel_size=pipeline_parallel_size,
            data_parallel_size=data_parallel_size,
            max_model_len=hint(max_model_len, "--max-model-len"),
            gpu_memory_utilization=gpu_memory_utilization,
            block_size=block_size,
            kv_cache_dtype=kv_cache_dtype,
            dtype=dtype,
            quantization=quantization,
            max_num_seqs=max_num_seqs,
            max_num_batched_tokens=hint(max_num_batched_tokens, "--max-num-batched-tokens"),
            enforce_eager=enforce_eager or None,
            enable_prefix_caching=enable_prefix_caching,
            kv_cache_memory_bytes=hint(kv_cache_memory_bytes, "--kv-cache-memory-bytes"),
            num_gpu_blocks_override=num_gpu_blocks_override,
        )
        flags.update({k: v for k, v in cli_flags.items() if v is not None})
        if model is None and config is None:
            _fail("no model given: vllm-fit plan MODEL --gpu H100 (see `vllm-fit models`)")
        p = vllm_fit.plan(
            model, gpu=gpu, gpu_memory_gib=gpu_memory_gib, vllm_version=vllm_version, config=config,
            free_memory_gib=free_memory_gib, **flags,
        )
    except VllmFitError as e:
        _fail(str(e))
        return
    if as_json:
        typer.echo(json.dumps(p.to_dict(), indent=2))
    else:
        typer.echo(render_plan(p))
    raise typer.Exit(0 if p.fits else 1)


def _plan_for_log(settings: dict) -> dict:
    """plan_fn for explain: the log's own configuration, planned by vllm-fit."""
    import vllm_fit

    flags = {k: v for k, v in settings.items() if v is not None}
    model = flags.pop("model", None)
    version = flags.pop("vllm_version", None)
    total = flags.pop("gpu_memory_gib", None)
    if flags.get("quantization") in ("compressed-tensors", "None"):
        flags.pop("quantization")  # read from the checkpoint's config
    return vllm_fit.plan(model, gpu_memory_gib=total, vllm_version=version, **flags).to_dict()


@app.command(help="Read vLLM start-up logs (a file, a folder, or - for stdin) and say where the memory went.")
def explain(
    source: str = typer.Argument(..., help="Log file, folder of logs, or - (standard input)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per log."),
    fmt: str = typer.Option("text", "--format", help="text, csv or markdown."),
    compare: bool = typer.Option(True, "--compare/--no-compare", help="Compare with vllm-fit's plan of the same configuration."),
) -> None:
    from pathlib import Path

    from .explain import explain_reports, render_csv, render_markdown, render_text
    from .logreader import read_log, read_logs_in_folder

    if fmt not in ("text", "csv", "markdown"):
        _fail(f"--format {fmt!r}: use text, csv or markdown")
    try:
        if source != "-" and Path(source).is_dir():
            pairs = [(str(p), r) for p, r in read_logs_in_folder(Path(source))]
        elif source != "-" and not Path(source).exists():
            _fail(f"{source} does not exist")
            return
        else:
            pairs = [(source, r) for r in read_log(source)]
    except OSError as e:
        _fail(f"cannot read {source}: {e.strerror or e}")
        return
    if not pairs:
        _fail(f"no vLLM log found in {source}")
    result = explain_reports(pairs, compare=compare, plan_fn=_plan_for_log)
    if as_json:
        out = []
        for (src, report), entry in zip(pairs, result["logs"]):
            obj = report.to_dict()
            obj["source"] = src
            for key in ("predicted", "errors", "kv_error_gib", "kv_error_explained_by", "plan_error"):
                if key in entry:
                    obj[key] = entry[key]
            out.append(obj)
        payload = out[0] if len(out) == 1 else {"logs": out, "mean_abs_error": result.get("mean_abs_error")}
        typer.echo(json.dumps(payload, indent=2, default=str))
        return
    render = {"text": render_text, "csv": render_csv, "markdown": render_markdown}[fmt]
    typer.echo(render(result))


@app.command(help="List the GPU catalog (total memory as CUDA reports it).")
def gpus(as_json: bool = typer.Option(False, "--json")) -> None:
    from .gpus import gpu_catalog

    rows = gpu_catalog()
    if as_json:
        typer.echo(json.dumps([{"name": g.name, "device_name": g.device_name, "total_bytes": g.total_bytes,
                                "total_gib": round(g.total_gib, 4), "sms": g.sms, "source": g.source} for g in rows], indent=2))
        return
    typer.echo(f"{'name':<12} {'total GiB':>10} {'SMs':>5}  device name / source")
    for g in rows:
        typer.echo(f"{g.name:<12} {g.total_gib:>10.2f} {g.sms:>5}  {g.device_name}: {g.source}")


@app.command(help="List the bundled model catalog.")
def models(as_json: bool = typer.Option(False, "--json"), search: Optional[str] = typer.Argument(None)) -> None:
    from .sources import catalog_entries

    rows = [e for e in catalog_entries() if not search or search.lower() in e["id"].lower()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for e in rows:
        short = e["id"].split("/")[-1].lower()
        typer.echo(f"{e['id']:<48} {short:<36} {e['provenance'].get('verbatim', '')[:40]}")


@app.command(help="List the vLLM versions vllm-fit models.")
def versions() -> None:
    from .versions import DEFAULT_VERSION, supported_versions

    for v in supported_versions():
        typer.echo(v + ("  (default)" if v == DEFAULT_VERSION else ""))


@app.command(help="Serve the web page and REST API (needs the `web` extra: pip install 'vllm-fit[web]').")
def web(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    cache_size: int = typer.Option(256, "--cache-size", min=0, help="Plans kept in memory (0: none)."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log"),
) -> None:
    try:
        from .web import serve
        import fastapi, jinja2, uvicorn  # noqa: F401,E401
    except ImportError as e:
        _fail(f"the web server needs the `web` extra ({e.name} is missing): pip install 'vllm-fit[web]'")
        return
    serve(host=host, port=port, cache_size=cache_size, access_log=access_log)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        app(args=argv, prog_name="vllm-fit")
    except VllmFitError as e:  # pragma: no cover - commands catch their own
        typer.echo(f"vllm-fit: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
