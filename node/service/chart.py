"""The operator page's chart: the community's cumulative epsilon after each release, as inline SVG.

Drawn on the server (no JavaScript, nothing for the page's Content-Security-Policy to allow) from
the budget summary's timeline (privacy/reports/node_report.py `budget_summary`), whose
`claimed_epsilon` is the privacy filter's cumulative figure committed in each signed ledger entry
(ARCHITECTURE.md invariants 2 and 5). Numbers only: no text, no contributor (invariant 1).
"""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


def _ticks(top: float, n: int = 4) -> list[float]:
    """`n` + 1 evenly spaced values from 0 to `top`."""
    return [top * i / n for i in range(n + 1)]


def budget_svg(timeline: list[dict], cap: float, delta: float) -> Markup:
    """A step chart of cumulative epsilon (y) after each ledger entry (x), with the policy's cap dashed.

    `timeline`: dicts with `seq`, `kind`, `claimed_epsilon` (cumulative), `created_at`. The SVG has a
    title and a description for screen readers; each point also has a <title> (kind, seq, epsilon)."""
    ys = [0.0] + [float(t["claimed_epsilon"]) for t in timeline]
    top = max([cap, *ys]) * 1.1 or 1.0
    n = max(1, len(timeline))
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: float) -> float:
        return LEFT + pw * i / n

    def y(v: float) -> float:
        return TOP + ph * (1 - v / top)

    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title chart-desc" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        '<title id="chart-title">Privacy budget spent over time</title>',
        f'<desc id="chart-desc">Cumulative epsilon at delta {delta:g} after each of {len(timeline)} releases; '
        f'the cap is {cap:g}; {ys[-1]:.3g} spent.</desc>',
    ]
    for v in _ticks(top):  # horizontal grid and y labels
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2g}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + ph}"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + ph}" y2="{TOP + ph}"/>')
    parts.append(f'<text class="label" x="{LEFT + pw / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                 'release (ledger entry)</text>')
    parts.append(f'<text class="label" x="12" y="{TOP + ph / 2:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + ph / 2:.1f})">epsilon</text>')
    parts.append(f'<line class="cap" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(cap):.1f}" y2="{y(cap):.1f}"/>')
    parts.append(f'<text class="cap-label" x="{WIDTH - RIGHT - 4}" y="{y(cap) - 5:.1f}" text-anchor="end">'
                 f'cap {cap:g}</text>')
    if timeline:
        pts = [f"{x(0):.1f},{y(0):.1f}"]
        for i in range(1, len(ys)):  # step "post": hold the previous value until the next release
            pts.append(f"{x(i):.1f},{y(ys[i - 1]):.1f}")
            pts.append(f"{x(i):.1f},{y(ys[i]):.1f}")
        parts.append(f'<polyline class="spent" points="{" ".join(pts)}"/>')
        for i, t in enumerate(timeline, start=1):
            label = escape(f"#{t['seq']} {t['kind']}: epsilon {float(t['claimed_epsilon']):.3g} ({t.get('created_at', '')})")
            parts.append(f'<circle class="point" cx="{x(i):.1f}" cy="{y(ys[i]):.1f}" r="3"><title>{label}</title></circle>')
    else:
        parts.append(f'<text class="empty" x="{LEFT + pw / 2:.1f}" y="{TOP + ph / 2:.1f}" text-anchor="middle">'
                     'no releases yet</text>')
    parts.append("</svg>")
    return Markup("\n".join(parts))
