"""`vllm-fit profile` and `vllm-fit watch` against the real vLLM 0.32 CPU engine.

One `vllm serve` start for the whole module (about 25-40 s on 2 cores): the module fixture runs
`run_profile` (the code behind `vllm-fit profile`) on a config-only Qwen3 folder with dummy
weights, and while the server is up it runs `vllm-fit watch` (the CLI, in-process) and sends a
second request of known length.  The tests then check what was recorded.

The numbers, by hand (vLLM's v1 KV arithmetic; docs in ../shared/reference/vllm-cpu-probe.md):
  Qwen3, 2 layers, 2 KV heads, head_dim 64, bf16 (2 B), CPU default block_size 128:
  one block = 2 layers x (K+V = 2) x 2 heads x 64 x 2 B x 128 tokens = 131,072 B
  --kv-cache-memory-bytes 20,000,000 -> floor(20,000,000 / 131,072) = 152 blocks
      (152 x 131,072 = 19,922,944 <= 20,000,000 < 153 x 131,072 = 20,054,016)
  one is the null block: 151 usable; vLLM's usage gauge = 1 - free / 151
  KV tokens = 152 x 128 = 19,456; concurrency at max_model_len 1024 = 152 / (1024 / 128) = 19.0x
  request A (profile): 641 prompt tokens -> ceil(641 / 128) = 6 blocks (640 < 641 <= 768)
      usage = 6 / 151 = 0.0397...; max_tokens 768 - 641 + 1 = 128 keeps it in those 6 blocks
  request B (watch, in flight): 130 tokens -> ceil(130 / 128) = 2 blocks; usage 2 / 151
"""

import json
import os
import threading
import time

import pytest
from typer.testing import CliRunner

from vllm_fit.cli import _plan_for_log, app
from vllm_fit.cli_live import _watch_plan_fn
from vllm_fit.http_fetch import post_json
from vllm_fit.profile import profile_exit_code, render_profile, run_profile

pytestmark = pytest.mark.engine

# KV per block depends on layers, KV heads and head_dim only; hidden/intermediate/vocab are wide
# so that one decode step takes long enough for /metrics scrapes to see a request running
QWEN3_TINY = {
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 8192,
    "num_hidden_layers": 2, "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 64,
    "vocab_size": 32768, "max_position_embeddings": 4096, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
    "hidden_act": "silu", "torch_dtype": "bfloat16", "tie_word_embeddings": True, "attention_bias": False,
    "bos_token_id": 1, "eos_token_id": 2,
}
KV_BYTES = 20_000_000
BLOCKS = 152
USABLE = 151
A_TOKENS, A_BLOCKS, A_MAX_TOKENS = 641, 6, 128
B_TOKENS, B_BLOCKS = 130, 2


def _watch(*args: str):
    r = CliRunner().invoke(app, ["watch", *args])
    return r.exit_code, r.output


@pytest.fixture(scope="module")
def live(vllm_cpu_venv, tmp_path_factory):
    root = tmp_path_factory.mktemp("watch-profile")
    model = root / "qwen3-tiny"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(QWEN3_TINY))
    serve = vllm_cpu_venv / "bin" / "vllm-cpu-serve"
    command = [str(serve), "serve", str(model), "--load-format", "dummy", "--skip-tokenizer-init",
               "--enforce-eager", "--max-model-len", "1024", "--kv-cache-memory-bytes", str(KV_BYTES)]
    seen: dict = {}

    def while_up(url: str, result: dict) -> None:
        seen["url"] = url
        seen["watch_json"] = _watch(url, "--once", "--json", "--request-tokens", str(A_TOKENS))
        seen["watch_text"] = _watch(url, "--once", "--request-tokens", str(A_TOKENS))
        # request B in flight: block count constant for its whole life (window = 256 - 130 + 1 = 127)
        answer: dict = {}
        prompt = [500 + (i * 7) % 400 for i in range(B_TOKENS)]  # other ids than request A: no prefix hit

        def send() -> None:
            answer["r"] = post_json(url, "/v1/completions", {"model": str(model), "prompt": prompt, "max_tokens": 127,
                                                           "ignore_eos": True, "temperature": 0.0}, timeout=120)

        t = threading.Thread(target=send)
        t.start()
        snaps = []
        while t.is_alive():
            code, out = _watch(url, "--once", "--json", "--no-compare", "--request-tokens", str(B_TOKENS))
            if code in (0, 1):
                snap = json.loads(out)
                if snap["request"]["running"] == 1 and snap["metrics"]["kv_cache_usage"]:
                    snaps.append((code, snap))
        t.join()
        print(f"watch snapshots that caught request B running: {len(snaps)}")
        seen["in_flight"] = snaps
        seen["answer_b"] = answer.get("r")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    t0 = time.monotonic()
    result = run_profile(command, log_path=root / "profile.log", timeout=300, request_tokens=A_TOKENS, grace=30,
                         plan_fn=_plan_for_log, watch_plan_fn=_watch_plan_fn, env=env, while_up=while_up)
    seen["wall_seconds"] = round(time.monotonic() - t0, 1)
    print(render_profile(result))
    return result, seen


def test_profile_starts_explains_and_stops(live):
    result, _ = live
    assert result["status"] == "ready", result.get("failure")
    assert profile_exit_code(result) == 0
    assert result["stop"]["signal"] == "SIGINT" and result["stop"]["killed"] is False
    log = result["explain"]["logs"][0]
    measured = log["measured"]
    assert measured["num_gpu_blocks"] == BLOCKS and measured["kv_cache_tokens"] == 19_456
    assert measured["max_concurrency"] == pytest.approx(19.0)
    # vllm-fit's own plan of the logged configuration: the same blocks
    assert log["predicted"]["num_gpu_blocks"] == BLOCKS
    assert "Application startup complete" in open(result["log"]).read()


def test_profile_request_blocks_and_usage_match_exactly(live):
    result, _ = live
    req = result["request"]
    assert req["prompt_tokens_served"] == A_TOKENS  # the token-id prompt has exactly that length
    assert req["max_tokens"] == A_MAX_TOKENS and req["completion_tokens"] == A_MAX_TOKENS
    assert (req["block_size"], req["num_gpu_blocks"], req["usable_blocks"]) == (128, BLOCKS, USABLE)
    assert req["predicted_blocks"] == A_BLOCKS
    assert req["samples_in_flight"] >= 1, req
    # every /metrics scrape taken while it ran: exactly 6 blocks, usage exactly 1 - 145/151 (vLLM's float)
    assert req["live_blocks"] == [A_BLOCKS]
    assert req["live_usage"] == [1.0 - (USABLE - A_BLOCKS) / USABLE]
    assert req["live_usage"][0] == pytest.approx(6 / 151, rel=1e-12)
    assert req["match"] is True


def test_watch_once_json_against_the_server(live):
    result, seen = live
    code, out = seen["watch_json"]
    assert code == 0, out
    snap = json.loads(out)
    m = snap["metrics"]
    assert (m["num_gpu_blocks"], m["block_size"], m["kv_cache_size_tokens"], m["kv_cache_memory_bytes"]) == \
        (BLOCKS, 128, 19_456, KV_BYTES)
    assert snap["vllm_version"] == "0.32.0" and snap["max_model_len"] == 1024
    # after request A only: 641 prompt tokens queried in the prefix cache, none hit, 128 generated
    assert (m["prefix_cache_queries"], m["prefix_cache_hits"], m["prompt_tokens"], m["generation_tokens"]) == \
        (641.0, 0.0, 641.0, 128.0)
    assert m["kv_cache_usage"] == 0.0 and m["requests_running"] == 0.0  # it finished: blocks freed
    assert m["ttft"]["count"] == 1.0 and m["itl"]["count"] == 127.0  # 128 tokens: 1 first + 127 gaps
    # the plan of the served folder with the flags read from the labels: no difference
    rows = {r["term"]: r for r in snap["kv_comparison"]}
    assert rows["num_gpu_blocks"]["plan"] == BLOCKS and rows["num_gpu_blocks"]["diff"] == 0
    assert rows["kv_cache_tokens"]["diff"] == 0 and rows["kv_cache_memory_bytes"]["diff"] == 0
    assert snap["plan_flags"]["kv_cache_memory_bytes"] == KV_BYTES and snap["plan_flags"]["block_size"] == 128
    req = snap["request"]
    assert (req["predicted_blocks"], req["max_concurrent_requests"]) == (A_BLOCKS, USABLE // A_BLOCKS)  # 151 // 6 = 25
    assert req["match"] is None and req["fits_now"] is True


def test_watch_in_flight_request_matches_exactly(live):
    _, seen = live
    assert seen["answer_b"]["usage"]["prompt_tokens"] == B_TOKENS
    snaps = seen["in_flight"]
    assert snaps, "no watch snapshot caught request B running"
    for code, snap in snaps:
        req = snap["request"]
        assert code == 0
        assert req["predicted_blocks"] == B_BLOCKS and req["live_blocks"] == B_BLOCKS
        assert req["live_usage"] == req["predicted_usage"] == 1.0 - (USABLE - B_BLOCKS) / USABLE
        assert req["match"] is True


def test_watch_text_view(live):
    _, seen = live
    code, out = seen["watch_text"]
    assert code == 0
    assert "152 blocks of 128 tokens (151 usable + 1 null block) = 19,456 tokens" in out
    assert "641 tokens -> ceil(641 / 128) = 6 blocks" in out
    assert "num_gpu_blocks" in out and "ok" in out
