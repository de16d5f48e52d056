"""The node as a service (issue 12): members contribute, see and withdraw their own data over HTTP.

    members.py     the service layer (no HTTP): invitations, tokens, contributions, me, withdrawal, export
    governance.py  policy proposals, their notice period, members' objections, dissent notes
    security.py    tokens, CSRF, rate limits, security headers, the body-size limit, quiet logs
    api.py         the JSON API (/api/v1/...), a thin layer over members.py and governance.py
    app.py         `create_app(node_dir)`: the ASGI app `cairn node serve` runs under uvicorn
    pages.py       the member and operator pages (server-rendered HTML over the same service layer)
"""
