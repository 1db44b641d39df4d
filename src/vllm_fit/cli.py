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


def _mm_limits(raw: Optional[str]) -> Optional[dict]:
    from .serve_args import parse_mm_limits

    if raw is None:
        return None
    try:
        return parse_mm_limits(raw)
    except ValueError:
        _fail(f'--limit-mm-per-prompt {raw!r} is not a modality limit (example: \'{{"image": 2}}\')')
        return None


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
    enable_expert_parallel: bool = typer.Option(False, "--enable-expert-parallel", "-ep"),
    limit_mm_per_prompt: Optional[str] = typer.Option(None, "--limit-mm-per-prompt", help='e.g. \'{"image": 2}\''),
    skip_mm_profiling: bool = typer.Option(False, "--skip-mm-profiling"),
    disable_hybrid_kv_cache_manager: Optional[bool] = typer.Option(
        None, "--disable-hybrid-kv-cache-manager/--no-disable-hybrid-kv-cache-manager"),
    mamba_ssm_cache_dtype: Optional[str] = typer.Option(None, "--mamba-ssm-cache-dtype"),
    disable_sliding_window: bool = typer.Option(False, "--disable-sliding-window"),
    mamba_cache_dtype: Optional[str] = typer.Option(None, "--mamba-cache-dtype"),
    flashinfer_sampler: Optional[bool] = typer.Option(
        None, "--flashinfer-sampler/--no-flashinfer-sampler",
        help="VLLM_USE_FLASHINFER_SAMPLER=1/0 (vLLM 0.11: whether flashinfer is installed). Default: the version's."),
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
            enable_expert_parallel=enable_expert_parallel or None,
            limit_mm_per_prompt=_mm_limits(limit_mm_per_prompt),
            skip_mm_profiling=skip_mm_profiling or None,
            disable_hybrid_kv_cache_manager=disable_hybrid_kv_cache_manager,
            mamba_ssm_cache_dtype=mamba_ssm_cache_dtype,
            disable_sliding_window=disable_sliding_window or None,
            mamba_cache_dtype=mamba_cache_dtype,
            vllm_use_flashinfer_sampler=flashinfer_sampler,
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

    from .explain import plan_args_for_log

    return vllm_fit.plan(**plan_args_for_log(settings)).to_dict()


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
    if all(report.recognized_nothing for _, report in pairs):
        where = "standard input" if source == "-" else source
        _fail(f"{where} has no vLLM log lines: is it the output of `vllm serve` (or `kubectl logs` of its pod)?")
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


# ---------------------------------------------------------------- advise / sweep / deploy

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


# vLLM flags without a value that do not change the plan but belong on a serve line
_PASSTHROUGH_SWITCHES = ("--disable-hybrid-kv-cache-manager", "--async-scheduling", "--trust-remote-code",
                         "--enable-auto-tool-choice", "--disable-log-requests")


def _serve_flags(extra: list[str], passthrough: Optional[list] = None) -> dict:
    """vLLM's own flags (--max-model-len 16k, -tp 2, ...) given after the model.  Flags vLLM knows that
    do not change memory (--kv-offloading-size 62, --served-model-name x) go to ``passthrough``."""
    from .serve_args import _IGNORED_WITH_VALUE, parse_serve_command

    model, flags, ignored = parse_serve_command(["serve", *extra])
    if model is not None:
        _fail(f"unexpected argument {model!r} (the model comes first, once)")
    for item in ignored:
        name = item.split()[0].split("=")[0]
        if name in _PASSTHROUGH_SWITCHES and (" " in item or "=" in item):
            _fail(f"{name} takes no value")
        if name not in _IGNORED_WITH_VALUE and name not in _PASSTHROUGH_SWITCHES:
            _fail(f"unknown option {name!r}: give vLLM flags by their `vllm serve` names (see `vllm-fit plan --help`)")
        if passthrough is not None:
            passthrough.extend(item.split(" ", 1) if " " in item and "=" not in item.split()[0] else [item])
    return flags


@app.command(
    context_settings=_PASSTHROUGH,
    help="What to change so vLLM starts, serves N requests of L tokens and cold-starts fast: "
    "`vllm-fit advise MODEL --gpu H100 --max-model-len 16000 -tp 2 ... (any vLLM flags) [--concurrency N] [--context L] [--goal ...]`. "
    "Every answer is re-planned (the next step beyond it is shown failing).",
)
def advise(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Catalog name, config.json / folder, or hub id."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU from `vllm-fit gpus` (default H100)."),
    gpu_memory_gib: Optional[float] = typer.Option(None, "--gpu-memory-gib"),
    free_memory_gib: Optional[float] = typer.Option(None, "--free-memory-gib"),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version"),
    config: Optional[str] = typer.Option(None, "--config"),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Concurrent requests to serve (default 1)."),
    context: Optional[str] = typer.Option(None, "--context", help="Tokens per request (default: --max-model-len or the model's)."),
    goal: str = typer.Option("throughput", "--goal", help="throughput, latency, cold-start or long-context."),
    prices: Optional[str] = typer.Option(None, "--prices", help="JSON file: GPU name -> USD per GPU-hour."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node"),
    link_gb_s: float = typer.Option(20.0, "--link-gb-s", help="Host-to-GPU bandwidth for restore, GB/s (default 20: PCIe 4.0 x16 in practice)."),
    disk_gb_s: float = typer.Option(2.0, "--disk-gb-s", help="Checkpoint image read bandwidth, GB/s (default 2: one NVMe)."),
    kv_compression: float = typer.Option(1.0, "--kv-compression", help="Checkpoint compression of KV pages (default 1 = none)."),
    kv_offloading_size: Optional[float] = typer.Option(None, "--kv-offloading-size", help="CPU KV offloading GiB to evaluate."),
    host_ram_gib: Optional[float] = typer.Option(None, "--host-ram-gib", help="Host RAM, to check the offloading buffer against."),
    no_cheapest: bool = typer.Option(False, "--no-cheapest", help="Skip the cheapest-GPU search."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    from .advise import advise as run_advise
    from .advise import render_advice
    from .serve_args import human_readable_int

    try:
        flags = _serve_flags(list(ctx.args))
        ctx_tokens = None
        if context is not None:
            try:
                ctx_tokens = human_readable_int(context)
            except ValueError:
                _fail(f"--context {context!r} is not a number of tokens")
        result = run_advise(
            model, gpu=gpu, gpu_memory_gib=gpu_memory_gib, free_memory_gib=free_memory_gib, vllm_version=vllm_version,
            config=config, concurrency=concurrency, context=ctx_tokens, goal=goal, prices=prices,
            gpus_per_node=gpus_per_node, link_gb_s=link_gb_s, disk_gb_s=disk_gb_s, kv_compression=kv_compression,
            kv_offloading_size=kv_offloading_size, host_ram_gib=host_ram_gib, include_cheapest=not no_cheapest, **flags,
        )
    except VllmFitError as e:
        _fail(str(e))
        return
    typer.echo(json.dumps(result, indent=2) if as_json else render_advice(result))


@app.command(
    context_settings=_PASSTHROUGH,
    help="Plan a grid of configurations: `vllm-fit sweep MODEL --gpu H100,L40S --tensor-parallel-size 1,2 "
    "--gpu-memory-utilization 0.5:0.9:0.1 --max-model-len 4k,16k --kv-cache-dtype auto,fp8 --max-num-seqs 64,256` "
    "(lists or start:stop:step); other vLLM flags are fixed. CSV or JSON rows; --plots DIR writes PNG and SVG.",
)
def sweep(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Catalog name, config.json / folder, or hub id."),
    gpu: str = typer.Option("H100", "--gpu", help="Comma list of GPUs."),
    tensor_parallel_size: Optional[str] = typer.Option(None, "--tensor-parallel-size", "-tp"),
    gpu_memory_utilization: Optional[str] = typer.Option(None, "--gpu-memory-utilization"),
    max_model_len: Optional[str] = typer.Option(None, "--max-model-len"),
    kv_cache_dtype: Optional[str] = typer.Option(None, "--kv-cache-dtype"),
    max_num_seqs: Optional[str] = typer.Option(None, "--max-num-seqs"),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version"),
    gpu_memory_gib: Optional[float] = typer.Option(None, "--gpu-memory-gib"),
    config: Optional[str] = typer.Option(None, "--config"),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write rows to this file instead of stdout."),
    plots: Optional[str] = typer.Option(None, "--plots", help="Folder for the PNG and SVG plots (needs vllm-fit[plots])."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    from pathlib import Path

    from .sweep import parse_list, rows_to_csv
    from .sweep import sweep as run_sweep

    if as_json:
        fmt = "json"
    if fmt not in ("csv", "json"):
        _fail(f"--format {fmt!r}: use csv or json")
    try:
        flags = _serve_flags(list(ctx.args))
        rows = run_sweep(
            model,
            gpu=parse_list(gpu, str, "--gpu"),
            tensor_parallel_size=parse_list(tensor_parallel_size, int, "--tensor-parallel-size"),
            gpu_memory_utilization=parse_list(gpu_memory_utilization, float, "--gpu-memory-utilization"),
            max_model_len=parse_list(max_model_len, int, "--max-model-len"),
            kv_cache_dtype=parse_list(kv_cache_dtype, str, "--kv-cache-dtype"),
            max_num_seqs=parse_list(max_num_seqs, int, "--max-num-seqs"),
            vllm_version=vllm_version, gpu_memory_gib=gpu_memory_gib, config=config, **flags,
        )
        files = []
        if plots:
            from .plots import plot_all

            files = plot_all(rows, plots)
    except VllmFitError as e:
        _fail(str(e))
        return
    text = json.dumps(rows, indent=1) if fmt == "json" else rows_to_csv(rows)
    if output:
        try:
            Path(output).write_text(text)
        except OSError as e:
            _fail(f"cannot write {output}: {e.strerror or e}")
        typer.echo(f"{len(rows)} configurations -> {output}", err=True)
    else:
        typer.echo(text.rstrip("\n"))
    for f in files:
        typer.echo(f"plot: {f}", err=True)


@app.command(
    context_settings=_PASSTHROUGH,
    help="The `vllm serve` line, `docker run`, Kubernetes Pod/Deployment (or a LeaderWorkerSet across nodes) and "
    "Helm values for a configuration that starts: `vllm-fit deploy MODEL --gpu H100 -tp 2 --max-model-len 16000`.",
)
def deploy(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Catalog name, config.json / folder, or hub id."),
    gpu: Optional[str] = typer.Option(None, "--gpu"),
    gpu_memory_gib: Optional[float] = typer.Option(None, "--gpu-memory-gib"),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version"),
    config: Optional[str] = typer.Option(None, "--config"),
    name: Optional[str] = typer.Option(None, "--name", help="Kubernetes name (default from the model)."),
    namespace: Optional[str] = typer.Option(None, "--namespace"),
    image: Optional[str] = typer.Option(None, "--image", help="Default vllm/vllm-openai:v<version>."),
    hf_secret: str = typer.Option("hf-token", "--hf-secret", help="Secret holding the Hugging Face token."),
    hf_secret_key: str = typer.Option("HF_TOKEN", "--hf-secret-key"),
    cache_pvc: Optional[str] = typer.Option(None, "--cache-pvc", help="PVC for the model cache (default emptyDir)."),
    port: int = typer.Option(8000, "--port"),
    replicas: int = typer.Option(1, "--replicas"),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node"),
    what: str = typer.Option("all", "--format", help="all, serve, docker, kubernetes, pod, deployment or helm."),
    write_chart: Optional[str] = typer.Option(None, "--write-chart", help="Copy the Helm chart and the planned values here."),
    force: bool = typer.Option(False, "--force", help="Write manifests even if the plan says vLLM fails."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object."),
) -> None:
    from .deploy import deploy as run_deploy
    from .deploy import render_deploy

    if what not in ("all", "serve", "docker", "kubernetes", "pod", "deployment", "helm"):
        _fail(f"--format {what!r}: use all, serve, docker, kubernetes, pod, deployment or helm")
    try:
        extra: list = []
        flags = _serve_flags(list(ctx.args), extra)
        d = run_deploy(
            model, gpu=gpu, gpu_memory_gib=gpu_memory_gib, vllm_version=vllm_version, config=config, name=name,
            namespace=namespace, image=image, hf_secret=hf_secret, hf_secret_key=hf_secret_key, cache_pvc=cache_pvc,
            port=port, replicas=replicas, gpus_per_node=gpus_per_node, force=force, extra_args=extra, **flags,
        )
        if write_chart:
            from .helm import write_chart as write

            if not d.get("helm_values"):
                _fail("no Helm chart for a multi-node layout; use the LeaderWorkerSet manifest")
            for f in write(write_chart, d["helm_values"]):
                typer.echo(f"wrote {f}", err=True)
    except VllmFitError as e:
        _fail(str(e))
        return
    typer.echo(json.dumps(d, indent=2) if as_json else render_deploy(d, what))


@app.command(help="Serve the web page and REST API on 127.0.0.1:8000 (needs the package's `web` extra).")
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


from . import cli_live as _cli_live  # noqa: E402  (watch, profile: they talk to a live server)

_cli_live.register(app)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        app(args=argv, prog_name="vllm-fit")
    except VllmFitError as e:  # pragma: no cover - commands catch their own
        typer.echo(f"vllm-fit: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
