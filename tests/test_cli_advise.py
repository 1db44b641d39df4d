"""CLI: advise, sweep, deploy; exit codes and one-line errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vllm_fit.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_advise_json_with_vllm_flags() -> None:
    r = run("advise", "qwen3-0.6b", "--gpu", "L4", "--vllm-version", "0.19.0", "--max-model-len", "8k",
            "--concurrency", "4", "--no-cheapest", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    # 8k = 8000 tokens (vLLM's human_readable_int: lowercase k = 1000)
    assert d["target"] == {"concurrency": 4, "context": 8000}
    assert d["recommended"]["starts"]


def test_advise_text_and_bad_flag() -> None:
    r = run("advise", "qwen3-0.6b", "--gpu", "L4", "--no-cheapest", "-tp", "1")
    assert r.exit_code == 0 and "Recommended for throughput" in r.output
    r = run("advise", "qwen3-0.6b", "--gpu", "L4", "--max-model-lenn", "5")
    assert r.exit_code == 2 and "unknown option" in r.output and "Traceback" not in r.output
    r = run("advise", "qwen3-0.6b", "--goal", "cheap")
    assert r.exit_code == 2 and "--goal" in r.output


def test_sweep_csv_file_and_plots(tmp_path) -> None:
    out = tmp_path / "rows.csv"
    r = run("sweep", "qwen3-0.6b", "--gpu", "L4,H100", "-tp", "1,2", "--gpu-memory-utilization", "0.5:0.9:0.2",
            "--max-model-len", "4096", "--block-size", "16", "-o", str(out), "--plots", str(tmp_path / "p"))
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert len(lines) == 1 + 2 * 2 * 3  # header + 2 GPUs x 2 TP x 3 utilizations
    assert len(list((tmp_path / "p").glob("*.png"))) == 3


def test_sweep_json_and_errors() -> None:
    r = run("sweep", "qwen3-0.6b", "--gpu", "L4", "--max-num-seqs", "16,32", "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)) == 2
    r = run("sweep", "qwen3-0.6b", "--gpu", "L4", "--gpu-memory-utilization", "0.9:0.5:0.1")
    assert r.exit_code == 2 and "start:stop:step" in r.output
    r = run("sweep", "qwen3-0.6b", "--format", "xml")
    assert r.exit_code == 2


def test_deploy_formats(tmp_path) -> None:
    r = run("deploy", "qwen3-0.6b", "--gpu", "L4", "--format", "serve", "--max-model-len", "4096")
    assert r.exit_code == 0 and r.output.strip().splitlines()[-1].startswith("vllm serve Qwen/Qwen3-0.6B")
    r = run("deploy", "qwen3-0.6b", "--gpu", "L4", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["kubernetes"]["deployment"]["kind"] == "Deployment"
    r = run("deploy", "qwen3-0.6b", "--gpu", "L4", "--write-chart", str(tmp_path / "chart"))
    assert r.exit_code == 0 and (tmp_path / "chart" / "values-planned.yaml").exists()
    r = run("deploy", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "--gpu", "H100")
    assert r.exit_code == 2 and "does not start" in r.output


def test_deploy_passes_serve_only_flags_through() -> None:
    r = run("deploy", "qwen3-0.6b", "--gpu", "L4", "--kv-offloading-size", "62", "--async-scheduling", "--format", "serve")
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("--kv-offloading-size 62 --async-scheduling")
    r = run("deploy", "qwen3-0.6b", "--gpu", "L4", "--async-scheduling=1")
    assert r.exit_code == 2
