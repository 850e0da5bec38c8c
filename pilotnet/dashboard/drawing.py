"""Geometry for the SVG the templates draw: line charts, the trust graph, badges.

Only numbers and the strings to print come out of here; the templates write
the SVG (autoescaped), so no node-supplied text is ever put into markup by hand.
"""

import math
import time

CHART_WIDTH = 600
CHART_HEIGHT = 160
CHART_PAD = 30
GRAPH_LIMIT = 60
GRAPH_SPACING = 36
GRAPH_MIN_RADIUS = 50
GRAPH_FONT = 10
GRAPH_LABEL_GAP = 10
GRAPH_PAD = 6
GRAPH_LEVEL_LABELS = 8
BADGE_HEIGHT = 20


def line_chart(samples, label_format, latest=None, field="online_nodes"):
    """Points, axis labels and peak of a chart of ``field`` over ``samples``.

    The point that is the ``latest`` sample (the figures now, see
    :meth:`~pilotnet.dashboard.history.History.chart`) is labelled "now".
    """
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
        labels.append("now" if sample is latest else time.strftime(label_format, time.gmtime(sample["ts"])))
    return {"points": points, "labels": labels, "peak": peak,
            "polyline": " ".join(f"{x},{y}" for x, y, _ in points),
            "width": CHART_WIDTH, "height": CHART_HEIGHT, "base": CHART_HEIGHT - CHART_PAD,
            "left": CHART_PAD, "right": CHART_WIDTH - CHART_PAD}


def _label_width(text):
    """Width of ``text`` in the graph's 10 px monospace labels (0.6 em a character)."""
    return len(text) * GRAPH_FONT * 0.6


def trust_graph(index):
    """The best-linked nodes on a circle and the trust links among them.

    The drawing is as large as its nodes need: the circle grows with the node
    count (``GRAPH_SPACING`` px of arc per node, at least ``GRAPH_MIN_RADIUS``),
    and the margins with the longest label, so a few nodes make a small graph
    and no label is cut at the edge.  Up to ``GRAPH_LEVEL_LABELS`` nodes the
    labels are level; beyond, neighbours at the top and bottom would overlap,
    so each label runs outwards along its node's radius (turned to read left to
    right).  The template draws it at this size (or narrower, on a narrow screen).
    """
    every_linked = [row for row in index.rows.values() if row.trust_links]
    linked = sorted(every_linked, key=lambda row: (-row.trust_links, row.id))[:GRAPH_LIMIT]
    radial = len(linked) > GRAPH_LEVEL_LABELS
    radius = max(GRAPH_MIN_RADIUS, len(linked) * GRAPH_SPACING / (2 * math.pi))
    longest = max((_label_width(row.hostname or row.address) for row in linked), default=0)
    side_margin = GRAPH_LABEL_GAP + longest + GRAPH_PAD
    end_margin = side_margin if radial else GRAPH_LABEL_GAP + GRAPH_FONT + GRAPH_PAD
    width, height = 2 * (radius + side_margin), 2 * (radius + end_margin)
    centre_x, centre_y = width / 2, height / 2
    positions = {}
    nodes = []
    for n, row in enumerate(sorted(linked, key=lambda row: row.id)):
        angle = 2 * math.pi * n / max(len(linked), 1) - math.pi / 2
        cos, sin = math.cos(angle), math.sin(angle)
        positions[row.id] = (round(centre_x + radius * cos, 1), round(centre_y + radius * sin, 1))
        label_x = centre_x + (radius + GRAPH_LABEL_GAP) * cos
        label_y = centre_y + (radius + GRAPH_LABEL_GAP) * sin
        if radial:
            # The template centres it on the radius (dy, in the turned text's own frame).
            rotate = round(math.degrees(angle) + (0 if cos >= 0 else 180), 1)
            anchor = "start" if cos >= 0 else "end"
        else:
            # Right of the nodes on the right half, left on the left, centred at the very
            # top and bottom; below the node at the bottom, above it at the top.
            rotate = None
            anchor = "middle" if abs(cos) < 0.2 else ("start" if cos > 0 else "end")
            label_y += GRAPH_FONT * (0.35 + 0.5 * sin)
        nodes.append({"x": positions[row.id][0], "y": positions[row.id][1], "row": row,
                      "anchor": anchor, "rotate": rotate,
                      "label_x": round(label_x, 1), "label_y": round(label_y, 1)})
    edges = [{"source": index.rows[a], "target": index.rows[b],
              "x1": positions[a][0], "y1": positions[a][1],
              "x2": positions[b][0], "y2": positions[b][1]}
             for a, b in index.edges if a in positions and b in positions]
    return {"width": round(width), "height": round(height), "nodes": nodes, "edges": edges,
            "shown": len(nodes), "linked": len(every_linked), "total_edges": len(index.edges)}


def badge(label, value, colour):
    """A flat badge, each half ``len(text) * 6.5 + 10`` px wide (the reference's sizes)."""
    left = round(len(label) * 6.5 + 10)
    right = round(len(value) * 6.5 + 10)
    return {"label": label, "value": value, "colour": colour, "left": left, "right": right,
            "width": left + right, "height": BADGE_HEIGHT}
