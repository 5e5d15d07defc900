#!/usr/bin/env python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""Plot `tcpao-selftests fuzz` timelines (summary.json files) as one SVG, no dependencies.

usage: fuzz-plot.py OUT.svg METRIC LABEL=summary.json [LABEL=summary.json ...]
METRIC is a timeline field: edges, pcs, corpus, findings, execs.
"""
import json
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, metric, runs = sys.argv[1], sys.argv[2], sys.argv[3:]
    series = []
    for r in runs:
        label, path = r.split("=", 1)
        s = json.load(open(path))
        pts = [(p["secs"] / 60.0, p[metric]) for p in s["timeline"]]
        series.append((f"{label} ({s['mode']}, {s['execs']} programs, {s['execs_per_sec']:.1f}/s)", pts))
    xmax = max(max(x for x, _ in pts) for _, pts in series) or 1.0
    ymax = max(max(y for _, y in pts) for _, pts in series) or 1
    w, h, l, b, t, rgt = 720, 420, 70, 50, 40, 20
    pw, ph = w - l - rgt, h - t - b
    sx = lambda x: l + pw * x / xmax
    sy = lambda y: t + ph - ph * y / ymax
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w/2}" y="20" text-anchor="middle" font-size="14">{metric} over time</text>',
         f'<line x1="{l}" y1="{t+ph}" x2="{l+pw}" y2="{t+ph}" stroke="black"/>',
         f'<line x1="{l}" y1="{t}" x2="{l}" y2="{t+ph}" stroke="black"/>']
    for i in range(6):
        x = xmax * i / 5
        y = ymax * i / 5
        o.append(f'<text x="{sx(x):.1f}" y="{t+ph+16}" text-anchor="middle">{x:.0f}</text>')
        o.append(f'<text x="{l-6}" y="{sy(y)+4:.1f}" text-anchor="end">{y:.0f}</text>')
        o.append(f'<line x1="{l}" y1="{sy(y):.1f}" x2="{l+pw}" y2="{sy(y):.1f}" stroke="#eee"/>')
    o.append(f'<text x="{l+pw/2}" y="{h-12}" text-anchor="middle">minutes</text>')
    o.append(f'<text x="16" y="{t+ph/2}" transform="rotate(-90 16 {t+ph/2})" text-anchor="middle">{metric}</text>')
    for k, (label, pts) in enumerate(series):
        c = COLORS[k % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        o.append(f'<rect x="{l+10}" y="{t+8+18*k}" width="12" height="3" fill="{c}"/>')
        o.append(f'<text x="{l+28}" y="{t+14+18*k}">{label}</text>')
    o.append("</svg>")
    open(out, "w").write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
