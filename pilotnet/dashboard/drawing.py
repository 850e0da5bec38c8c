"""Geometry for the SVG the templates draw: line charts, the trust graph, badges.

Only numbers and the strings to print come out of here; the templates write
the SVG (autoescaped), so no node-supplied text is ever put into markup by hand.
"""

import math
import time

CHART_WIDTH = 600
CHART_HEIGHT = 160
CHART_PAD = 30
GRAPH_SIZE = 480
GRAPH_LIMIT = 60
BADGE_HEIGHT = 20


def line_chart(samples, label_format, field="online_nodes"):
    """Points, axis labels and peak of a chart of ``field`` over ``samples``."""
    if not samples:
        return None
    values = [s[field] for s in samples]
    peak = max(max(values), 1)
    span = CHART_WIDTH - 2 * CHART_PAD
    step = span / max(len(samples) - 1, 1)
    points = []
    labels = []
    for n, sample in enumerate(samples):
        x = CHART_PAD + n * step
        y = CHART_HEIGHT - CHART_PAD - (sample[field] / peak) * (CHART_HEIGHT - 2 * CHART_PAD)
        points.append((round(x, 1), round(y, 1), sample[field]))
        labels.append(time.strftime(label_format, time.gmtime(sample["ts"])))
    return {"points": points, "labels": labels, "peak": peak,
            "polyline": " ".join(f"{x},{y}" for x, y, _ in points),
            "width": CHART_WIDTH, "height": CHART_HEIGHT, "base": CHART_HEIGHT - CHART_PAD,
            "left": CHART_PAD, "right": CHART_WIDTH - CHART_PAD}


def trust_graph(index):
    """The best-linked nodes on a circle and the trust links among them."""
    every_linked = [row for row in index.rows.values() if row.trust_links]
    linked = sorted(every_linked, key=lambda row: (-row.trust_links, row.id))[:GRAPH_LIMIT]
    centre = GRAPH_SIZE / 2
    radius = centre - 60
    positions = {}
    nodes = []
    for n, row in enumerate(sorted(linked, key=lambda row: row.id)):
        angle = 2 * math.pi * n / max(len(linked), 1) - math.pi / 2
        x, y = centre + radius * math.cos(angle), centre + radius * math.sin(angle)
        positions[row.id] = (round(x, 1), round(y, 1))
        nodes.append({"x": positions[row.id][0], "y": positions[row.id][1], "row": row,
                      "anchor": "start" if math.cos(angle) >= 0 else "end",
                      "label_x": round(centre + (radius + 10) * math.cos(angle), 1),
                      "label_y": round(centre + (radius + 10) * math.sin(angle), 1)})
    edges = [{"source": index.rows[a], "target": index.rows[b],
              "x1": positions[a][0], "y1": positions[a][1],
              "x2": positions[b][0], "y2": positions[b][1]}
             for a, b in index.edges if a in positions and b in positions]
    return {"size": GRAPH_SIZE, "nodes": nodes, "edges": edges,
            "shown": len(nodes), "linked": len(every_linked), "total_edges": len(index.edges)}


def badge(label, value, colour):
    """A flat badge, each half ``len(text) * 6.5 + 10`` px wide (the reference's sizes)."""
    left = round(len(label) * 6.5 + 10)
    right = round(len(value) * 6.5 + 10)
    return {"label": label, "value": value, "colour": colour, "left": left, "right": right,
            "width": left + right, "height": BADGE_HEIGHT}
