"""Reports for people, outside the trusted core: the node's privacy report and the auditor's report.

Nothing here decides anything: `node_report` renders a node's budget summary, `audit_report` an
`AuditResult`, as Markdown and self-contained HTML (plots embedded as PNG data URIs, nothing
fetched) from the Jinja2 templates in `templates/`. Every value a template inserts is escaped: HTML
templates are autoescaped, Markdown templates escape < and > (a node's name is untrusted text).
"""

from __future__ import annotations

import base64
import io

import jinja2


def _escape_markdown(value) -> str:
    """Markdown renderers pass raw HTML through: every value a Markdown template inserts has its < and >
    escaped (idempotent, so text built from escaped values is not escaped twice)."""
    return str(value).replace("<", "&lt;").replace(">", "&gt;")


def _environment(**options) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("privacy.reports", "templates"), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, **options)


_HTML = _environment(autoescape=True)  # every inserted value is HTML-escaped
_MARKDOWN = _environment(autoescape=False, finalize=_escape_markdown)
for _env in (_HTML, _MARKDOWN):
    _env.filters["fmt"] = lambda x, spec: format(x, spec)
    _env.filters["num"] = lambda x: "-" if x is None else f"{x:.4g}"  # 4 significant digits, or "-"
    _env.filters["eps"] = lambda x: "-" if x is None else f"{x:.4f}"  # an epsilon, or "-"
del _env


def render(template: str, **values) -> str:
    """Render `templates/<template>` with `values`: `*.html.j2` HTML-autoescaped, `*.md.j2` Markdown-escaped."""
    env = _HTML if template.endswith(".html.j2") else _MARKDOWN
    return env.get_template(template).render(**values)


def png_of(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a data: URI, so that a page embeds its plots."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
