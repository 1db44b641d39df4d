"""The page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Playwright's own browser download is never used: .ci/run installs Debian's
chromium when it is missing.  Screenshots go to a temporary folder; with
VLLM_FIT_UPDATE_SCREENSHOTS=1 they replace docs/web-*.png (committed, shown in
the README).
"""

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vllm_fit
from vllm_fit.cli import app as cli_app

CHROMIUM = Path("/usr/bin/chromium")
# the flags the machine notes give for Chromium on a closed network, run as root
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS = Path(__file__).resolve().parents[1] / "docs"
LOG_8B = "validation/vllm-0.19.0-h100/logs/meta-llama-llama-3-1-8b---h100-80gb--tp1pp1dp1--8192.log"


@pytest.fixture(scope="module")
def server_url():
    import uvicorn

    from vllm_fit.web import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("the web server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    yield pg
    context.close()


def _shot(page, name: str, tmp_path: Path, selector: str | None = None) -> Path:
    folder = DOCS if os.environ.get("VLLM_FIT_UPDATE_SCREENSHOTS") == "1" else tmp_path
    path = folder / name
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def _cli_tokens(tp: int) -> int | None:
    """The KV tokens `vllm-fit plan` prints ("STARTS: ... = N tokens"), None when it prints a failure."""
    r = CliRunner().invoke(cli_app, ["plan", "Qwen/Qwen3-32B", "--gpu", "H100", "-tp", str(tp)])
    m = re.search(r"STARTS: .* = ([\d,]+) tokens", r.output)
    return int(m.group(1).replace(",", "")) if m else None


def test_choose_qwen3_32b_on_h100_tp1_then_tp2(page, server_url, tmp_path):
    from playwright.sync_api import expect

    tp1 = vllm_fit.plan("Qwen/Qwen3-32B", gpu="H100", tensor_parallel_size=1)
    tp2 = vllm_fit.plan("Qwen/Qwen3-32B", gpu="H100", tensor_parallel_size=2)
    # Per token: 64 layers x K,V x 8 KV heads x 128 x 2 bytes = 256 KiB at TP=1, half at TP=2, so the
    # KV cache holds far more tokens at TP=2 (weights halve too).
    assert tp2.kv_cache_tokens > 2 * tp1.kv_cache_tokens

    page.goto(server_url + "/")
    expect(page.locator("#plan-empty")).to_be_visible()
    page.fill("#model", "Qwen/Qwen3-32B")
    page.select_option("#gpu", "H100")
    page.fill("#tensor_parallel_size", "1")
    page.click("#plan-button")
    expect(page.locator("#kv-tokens")).to_have_text(f"{tp1.kv_cache_tokens:,}")
    # TP=1 does not fit the model's 40,960-token context: the verdict and vLLM's own words
    expect(page.locator("#verdict")).to_have_attribute("data-fits", "false")
    expect(page.locator("#vllm-error")).to_contain_text("KV cache is needed, which is larger than the available KV cache memory")
    _shot(page, "web-plan-tp1.png", tmp_path, "#result")

    page.fill("#tensor_parallel_size", "2")
    page.click("#plan-button")
    expect(page.locator("#kv-tokens")).to_have_text(f"{tp2.kv_cache_tokens:,}")
    expect(page.locator("#verdict")).to_have_attribute("data-fits", "true")
    assert int(page.locator("#kv-tokens").get_attribute("data-value")) == _cli_tokens(2) == tp2.kv_cache_tokens
    expect(page.locator("svg.breakdown rect.seg")).to_have_count(5)
    expect(page.locator("#serve-command")).to_have_text("vllm serve Qwen/Qwen3-32B --tensor-parallel-size 2")
    _shot(page, "web-plan.png", tmp_path)

    # the state is in the URL: opening it again renders the same plan on the server
    assert "tensor_parallel_size=2" in page.url and "model=Qwen%2FQwen3-32B" in page.url
    fresh = page.context.new_page()
    fresh.goto(page.url)
    expect(fresh.locator("#kv-tokens")).to_have_text(f"{tp2.kv_cache_tokens:,}")
    assert fresh.input_value("#tensor_parallel_size") == "2"


def test_paste_a_vllm_command(page, server_url):
    from playwright.sync_api import expect

    expected = vllm_fit.plan_command("vllm serve Qwen/Qwen3-8B --max-model-len 32K -tp 2")
    page.goto(server_url + "/")
    page.click("text=or paste a whole")
    page.fill("#command", "vllm serve Qwen/Qwen3-8B --max-model-len 32K -tp 2 --port 9000")
    page.click("#plan-button")
    expect(page.locator("#kv-tokens")).to_have_text(f"{expected.kv_cache_tokens:,}")


def test_paste_a_config_json(page, server_url):
    from importlib import resources

    from playwright.sync_api import expect

    text = resources.files("vllm_fit").joinpath("data/models/Qwen/Qwen3-8B/config.json").read_text()
    expected = vllm_fit.plan("Qwen/Qwen3-8B", gpu="H100", max_model_len=8192)
    page.goto(server_url + "/")
    page.fill("#model", "my-own-qwen")
    page.locator("details:has(#config_json) summary").click()
    page.fill("#config_json", text)
    page.fill("#max_model_len", "8192")
    page.click("#plan-button")
    # the same weights and KV as the catalog's copy of that config.json
    expect(page.locator("#kv-tokens")).to_have_text(f"{expected.kv_cache_tokens:,}")
    expect(page.locator("#result h2")).to_contain_text("my-own-qwen")


def test_bad_input_shows_one_message(page, server_url):
    from playwright.sync_api import expect

    page.goto(server_url + "/")
    page.fill("#model", "no-such-model-anywhere")
    page.click("#plan-button")
    expect(page.locator("#plan-error")).to_contain_text("not in the bundled catalog")


def test_paste_a_log_and_see_its_table(page, server_url, shared, tmp_path):
    from playwright.sync_api import expect

    text = (shared / LOG_8B).read_text()
    page.goto(server_url + "/")
    page.fill("#log", text)
    page.click("#explain-button")
    table = page.locator("table.explain-table")
    expect(table).to_be_visible()
    # the log's own lines: "Available KV cache memory: 58.11 GiB", "GPU KV cache size: 476,016 tokens"
    expect(table.locator("tr[data-term=kv_cache_gib] td").nth(1)).to_have_text("58.11")
    expect(table.locator("tr[data-term=kv_cache_tokens] td").nth(1)).to_have_text("476,016")
    # and the plan of the same configuration beside it (predicted column)
    predicted = table.locator("tr[data-term=kv_cache_gib] td").nth(2).inner_text()
    assert abs(float(predicted) - 58.11) < 0.05
    _shot(page, "web-explain.png", tmp_path, "#explain")


def test_advice_and_sweep_panels(page, server_url, tmp_path):
    from playwright.sync_api import expect

    page.goto(server_url + "/")
    page.fill("#model", "Qwen/Qwen3-32B")
    page.fill("#tensor_parallel_size", "1")
    page.click("#plan-button")
    expect(page.locator("#verdict")).to_be_visible()
    # 8 requests of 16,384 tokens: 131,072 KV tokens; one H100 holds ~26k (see test_web_api), two hold ~287k
    page.fill("#concurrency", "8")
    page.fill("#context", "16384")
    page.click("#advise-button")
    expect(page.locator("#advice-command")).to_contain_text("--tensor-parallel-size 2")
    _shot(page, "web-advise.png", tmp_path, "#advise")

    page.fill("#sweep_tensor_parallel_size", "1,2,4")
    page.fill("#sweep_max_model_len", "8192,32768")
    page.click("#sweep-button")
    expect(page.locator("#sweep-count")).to_have_text("6 configurations.")
    expect(page.locator("img.sweep-plot")).to_have_count(3)
    # every plot decoded and drawn by the browser
    widths = page.eval_on_selector_all("img.sweep-plot", "els => els.map(e => e.naturalWidth)")
    assert all(w > 100 for w in widths)
    assert "sweep_tensor_parallel_size=1%2C2%2C4" in page.url
    _shot(page, "web-sweep.png", tmp_path, "#sweep")
