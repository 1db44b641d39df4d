"""The memory-breakdown chart of a plan as a small inline SVG (no plotting library).

One horizontal bar per GPU of the limiting pipeline stage, the terms of vLLM's
start-up identity in budget order, the part of the GPU outside
``gpu_memory_utilization`` greyed.  Plain strings in, a string out.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from ..units import GiB

# term, label, colour (colour-blind-safe Okabe-Ito palette)
SEGMENTS = (
    ("weights_bytes", "weights", "#0072B2"),
    ("activation_bytes", "peak activation", "#E69F00"),
    ("non_torch_bytes", "non-torch", "#CC79A7"),
    ("cudagraph_subtracted_bytes", "CUDA-graph estimate", "#D55E00"),
    ("kv_cache_bytes", "KV cache", "#009E73"),
)


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def breakdown_svg(plan, width: int = 720) -> str:
    total = max(plan.total_bytes, 1)
    bar_y, bar_h, left = 28, 34, 8
    inner = width - 2 * left
    scale = inner / total
    parts: list[str] = []
    x = float(left)
    legend: list[tuple[str, str, float]] = []
    for attr, label, colour in SEGMENTS:
        value = getattr(plan, attr)
        legend.append((label, colour, value / GiB))
        if value <= 0:
            continue
        w = min(value * scale, left + inner - x)
        if w <= 0:
            continue
        parts.append(
            f'<rect class="seg" data-term="{attr[:-6]}" x="{_num(x)}" y="{bar_y}" width="{_num(w)}" height="{bar_h}" '
            f'fill="{colour}"><title>{escape(label)}: {value / GiB:.2f} GiB</title></rect>'
        )
        if w > 46:
            parts.append(f'<text x="{_num(x + w / 2)}" y="{bar_y + bar_h / 2 + 4}" text-anchor="middle" '
                         f'class="seglabel">{value / GiB:.1f}</text>')
        x += w
    req_x = left + plan.requested_bytes * scale
    unreq = plan.total_bytes - plan.requested_bytes
    if unreq > 0:
        parts.append(f'<rect x="{_num(req_x)}" y="{bar_y}" width="{_num(unreq * scale)}" height="{bar_h}" fill="#d9d9d9">'
                     f'<title>outside gpu_memory_utilization: {unreq / GiB:.2f} GiB</title></rect>')
    parts.append(f'<line x1="{_num(req_x)}" x2="{_num(req_x)}" y1="{bar_y - 8}" y2="{bar_y + bar_h + 4}" stroke="#000" '
                 f'stroke-dasharray="3,2"/>')
    parts.append(f'<text x="{_num(min(req_x, width - 150))}" y="{bar_y - 11}" class="small">requested '
                 f'{plan.requested_bytes / GiB:.2f} GiB</text>')
    parts.append(f'<text x="{left}" y="{bar_y - 11}" class="small">0</text>')
    parts.append(f'<text x="{width - left}" y="{bar_y + bar_h + 16}" text-anchor="end" class="small">'
                 f'{plan.total_bytes / GiB:.2f} GiB total</text>')
    if plan.kv_cache_bytes < 0:
        parts.append(f'<text x="{_num(x + 4)}" y="{bar_y + bar_h + 16}" class="small bad">over budget by '
                     f'{-plan.kv_cache_bytes / GiB:.2f} GiB: no room for the KV cache</text>')
    # legend
    ly = bar_y + bar_h + 34
    lx = left
    for label, colour, gib in legend:
        text = f"{label} {gib:.2f} GiB"
        parts.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{lx + 16}" y="{ly}" class="small">{escape(text)}</text>')
        lx += 24 + 7 * len(text)
        if lx > width - 160:
            lx, ly = left, ly + 18
    height = ly + 12
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="breakdown" viewBox="0 0 {width} {height}" '
            f'width="100%" role="img" aria-label="GPU memory breakdown">'
            '<style>.small{font:12px sans-serif}.seglabel{font:bold 12px sans-serif;fill:#fff}.bad{fill:#b00}</style>'
            + "".join(parts) + "</svg>")
