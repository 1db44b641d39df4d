"""The command line: exit codes, JSON, vLLM command lines, and bad input."""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vllm_fit", *args], capture_output=True, text=True, env=ENV,
                          input=stdin, timeout=60)


def assert_bad_input(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    err = r.stderr.strip()
    assert err.startswith("vllm-fit: error:") and err.count("\n") == 0, err
    for n in needles:
        assert n.lower() in err.lower(), err


def test_plan_json_fields_and_exit_codes():
    r = run("plan", "qwen3-0.6b", "--gpu", "H100", "--max-model-len", "16000", "--block-size", "128",
            "--vllm-version", "0.11.0", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("vllm_version", "total_gib", "requested_gib", "weights_gib", "activation_gib", "non_torch_gib",
                "cudagraph_gib", "kv_cache_gib", "num_gpu_blocks", "kv_cache_tokens", "max_concurrency", "fits", "error"):
        assert key in d
    # H100 total 85,017,493,504 B = 79.1787 GiB; 0.9 of it = 71.2608 GiB
    assert d["total_gib"] == pytest.approx(79.1787, abs=1e-4)
    assert d["requested_gib"] == pytest.approx(71.2608, abs=1e-4)
    assert d["fits"] is True and d["error"] is None
    fail = run("plan", "qwen3-32b", "--max-model-len", "32000", "--block-size", "128", "--vllm-version", "0.11.0")
    assert fail.returncode == 1 and "estimated maximum model length is 18176" in fail.stdout


def test_plan_takes_a_vllm_serve_command_line():
    r = run("plan", "--json", "--", "vllm", "serve", "Qwen/Qwen3-32B", "--tensor-parallel-size=2",
            "--max-model-len", "16000", "--block-size", "128", "--host", "0.0.0.0", "--port", "8000",
            "--vllm-version", "0.11.0")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["settings"]["tensor_parallel_size"] == 2 and d["vllm_version"] == "0.11.0"
    # Qwen3-32B TP2 seed: KV 34.49 GiB measured
    assert abs(d["kv_cache_gib"] - 34.49) <= 0.10


def test_text_output_has_breakdown_and_log_lines():
    r = run("plan", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--max-model-len", "8k", "--vllm-version", "0.19.0")
    assert r.returncode == 0
    assert "weights" in r.stdout and "GPU KV cache size:" in r.stdout and "STARTS" in r.stdout


def test_lists():
    assert "H100" in run("gpus").stdout
    assert "Qwen/Qwen3-0.6B" in run("models").stdout
    assert "0.33.0" in run("versions").stdout


@pytest.mark.parametrize("args, needles", [
    (["plan", "acme/unknown-model"], ["not in the bundled catalog", "--config"]),
    (["plan", "qwen3-8b", "--gpu", "Z80"], ["unknown GPU", "--gpu-memory-gib"]),
    (["plan", "qwen3-8b", "--vllm-version", "0.5.0"], ["not supported", "0.11.0"]),
    (["plan", "qwen3-8b", "--vllm-version", "banana"], ["unknown vLLM version"]),
    (["plan", "qwen3-8b", "--gpu-memory-utilization", "0"], ["--gpu-memory-utilization"]),
    (["plan", "qwen3-8b", "--gpu-memory-utilization", "-0.5"], ["--gpu-memory-utilization"]),
    (["plan", "qwen3-8b", "--tensor-parallel-size", "0"], ["--tensor-parallel-size"]),
    (["plan", "qwen3-8b", "--max-model-len", "0"], ["--max-model-len"]),
    (["plan", "qwen3-8b", "--max-model-len", "lots"], ["--max-model-len"]),
    (["plan", "qwen3-8b", "--max-num-seqs", "-3"], ["--max-num-seqs"]),
    (["plan", "qwen3-8b", "--block-size", "48", "--vllm-version", "0.11.0"], ["--block-size"]),
    (["plan", "qwen3-8b", "--kv-cache-dtype", "int3"], ["--kv-cache-dtype"]),
    (["plan", "qwen3-8b", "--pipeline-parallel-size", "99"], ["pipeline"]),
    (["plan", "qwen3-8b", "--gpu-memory-gib", "-1"], ["gpu-memory-gib"]),
    (["plan", "qwen3-8b", "--gpu-memory-gib", "1e9"], ["gpu-memory-gib"]),
])
def test_bad_flags_and_models(args, needles):
    assert_bad_input(run(*args), *needles)


BAD_CONFIGS = {
    "not_json": ("{not json", ["not valid JSON"]),
    "array": ("[1, 2, 3]", ["JSON object"]),
    "no_arch": (json.dumps({"hidden_size": 64}), ["architectures"]),
    "missing_layers": (json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 64}), ["num_hidden_layers"]),
    "wrong_type": (json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": "many"}), ["integer"]),
    "huge": (json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 10**30, "hidden_size": 64}), ["range"]),
    "nan": ('{"architectures": ["LlamaForCausalLM"], "num_hidden_layers": NaN}', ["not valid JSON"]),
    "deep": ("[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
    "deep_dict": (json.dumps({"architectures": ["LlamaForCausalLM"], "x": eval("{'a':" * 50 + "1" + "}" * 50)}), ["nested too deeply"]),
    "unknown_arch": (json.dumps({"architectures": ["EvilForCausalLM"], "auto_map": {"AutoModel": "evil.Model"}}), ["unknown architecture"]),
    "bad_heads": (json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
                              "num_attention_heads": 6, "num_key_value_heads": 4, "intermediate_size": 8,
                              "vocab_size": 10, "max_position_embeddings": 64}), ["num_key_value_heads"]),
    "binary": (b"\x00\xff\xfe garbage".decode("latin-1"), ["not UTF-8"]),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_malformed_or_hostile_config(tmp_path, name):
    text, needles = BAD_CONFIGS[name]
    f = tmp_path / "config.json"
    f.write_text(text, encoding="latin-1" if name == "binary" else "utf-8")
    assert_bad_input(run("plan", "--config", str(f)), *needles)


def test_config_in_a_folder_and_as_path(tmp_path):
    cfg = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512, "vocab_size": 1024,
           "max_position_embeddings": 1024, "torch_dtype": "bfloat16", "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    r1 = run("plan", str(tmp_path), "--json", "--kv-cache-memory-bytes", "1G", "--block-size", "128")
    r2 = run("plan", "--config", str(tmp_path / "config.json"), "--json", "--kv-cache-memory-bytes", "1G", "--block-size", "128")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    # page = 2 x 128 x 2 heads x 64 x 2 B = 65,536 B x 2 layers = 128 KiB per block; 1 GiB -> 8192
    # blocks (the CPU-engine probe's "base" case measured 8,192 with the same shape).
    assert json.loads(r1.stdout)["num_gpu_blocks"] == 8192 == json.loads(r2.stdout)["num_gpu_blocks"]


def test_explain_stdin_json_and_compare(shared):
    log = shared / "validation" / "vllm-0.19.0-h100" / "logs" / "qwen-qwen3-8b--h100-80gb--tp1pp1dp1--8192.log"
    r = run("explain", "-", "--json", stdin=log.read_text())
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    # measured.csv: weights 15.27, activation 2.21, non-torch 0.25, KV 57.5 GiB, 418,688 tokens
    m = d["measured"]
    assert (m["weights_gib"], m["activation_gib"], m["non_torch_gib"], m["kv_cache_gib"], m["kv_cache_tokens"]) == \
        (15.27, 2.21, 0.25, 57.5, 418688)
    assert abs(d["predicted"]["kv_cache_gib"] - 57.5) < 0.05


def test_explain_garbage_and_missing():
    # Nothing a vLLM log would print: one clear line, exit 2 (a truncated real log still
    # gets its report, with what is missing named).
    assert_bad_input(run("explain", "-", stdin="\x00\x01 not a vllm log \xff\n" * 50), "no vLLM log lines")
    assert_bad_input(run("explain", "/no/such/log"), "does not exist")


def test_explain_plans_a_cpu_log_with_the_cpu_block_size(tmp_path):
    # A CPU-engine log says device_config=cpu and, with no --block-size, vLLM's
    # CPU platform uses 128-token blocks.  Qwen3 test config: 2 layers x 2 KV heads
    # x 64 dims x 2 (K, V) x 2 bytes x 128 tokens = 131,072 B per block;
    # 20,000,000 B // 131,072 = 152 blocks (16-token blocks would give 1,220).
    from vllm_fit.cli import _plan_for_log

    cfg = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 256,
           "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 64, "vocab_size": 1024, "max_position_embeddings": 4096,
           "torch_dtype": "bfloat16", "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    settings = {"model": str(tmp_path), "device": "cpu", "vllm_version": "0.32.0", "max_model_len": 1024,
                "kv_cache_memory_bytes": 20_000_000}
    assert _plan_for_log(settings)["num_gpu_blocks"] == 152
    settings["device"] = "cuda"
    assert _plan_for_log(settings)["num_gpu_blocks"] == 1220


def test_log_settings_become_plan_arguments_once_for_cli_and_web():
    # One translation serves `vllm-fit explain` and POST /api/explain: a CPU log
    # (device_config=cpu, no --block-size) plans with 128-token blocks; the log's
    # "compressed-tensors" is left to the checkpoint's config; empty values dropped.
    from vllm_fit.explain import plan_args_for_log

    args = plan_args_for_log({"model": "m", "vllm_version": "0.32.0", "gpu_memory_gib": None, "device": "cpu",
                              "quantization": "compressed-tensors", "max_model_len": 1024, "dtype": None})
    assert args == {"model": "m", "vllm_version": "0.32.0", "gpu_memory_gib": None, "block_size": 128,
                    "max_model_len": 1024}
    assert plan_args_for_log({"device": "cuda", "block_size": 32})["block_size"] == 32
