"""Plots: PNG and SVG written, readable, of a sensible size."""

from __future__ import annotations

import pytest

from vllm_fit.sweep import sweep

pytest.importorskip("matplotlib")


def test_three_plots(tmp_path) -> None:
    import matplotlib.image as mpimg

    from vllm_fit.plots import plot_all

    rows = sweep("meta-llama/Llama-3.1-8B-Instruct", gpu=["H100", "L40S"], tensor_parallel_size=[1, 2],
                 gpu_memory_utilization=[0.5, 0.7, 0.9], max_model_len=[4096, 16384, 65536], vllm_version="0.19.0")
    files = plot_all(rows, tmp_path)
    assert len(files) == 6
    pngs = [f for f in files if f.endswith(".png")]
    assert len(pngs) == 3
    for f in pngs:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        img = mpimg.imread(f)
        h, w = img.shape[:2]
        assert h > 300 and w > 400
        # not a blank canvas: many distinct colours
        assert len({tuple(px) for px in img.reshape(-1, img.shape[2])[::97]}) > 20
    for f in files:
        if f.endswith(".svg"):
            assert "<svg" in open(f).read(2000)


def test_empty_rows_are_an_error(tmp_path) -> None:
    from vllm_fit.errors import VllmFitError
    from vllm_fit.plots import plot_memory_breakdown

    with pytest.raises(VllmFitError):
        plot_memory_breakdown([], tmp_path / "x")


def test_unwritable_plot_folder_is_one_clear_error(tmp_path) -> None:
    from vllm_fit.errors import VllmFitError
    from vllm_fit.plots import plot_all

    rows = sweep("qwen3-0.6b", gpu=["H100"], max_model_len=[4096])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(VllmFitError, match="cannot write the plots"):
        plot_all(rows, blocker / "plots")
