"""cairn/head_cli.py `read_node_head` (`cairn audit verify --node-head FILE|URL`, issue 15): the URL is
the auditor's, but whatever answers it is untrusted, so every fetch is bounded and refused by rule."""

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import click
import pytest

import cairn.head_cli as hc


def test_node_head_fetch_refuses_redirects_off_http_huge_and_slow_bodies(tmp_path, monkeypatch):
    """--node-head is a URL the auditor types, but what answers it is untrusted: a redirect to ftp://
    or file://, a body of megabytes, a body that trickles for ever, a non-JSON body and an endless
    file (/dev/zero) are each a refusal naming --node-head, within the fetch deadline."""
    class Hostile(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/redirect-"):
                self.send_response(302)
                self.send_header("Location", {"/redirect-ftp": "ftp://127.0.0.1/h.json",
                                              "/redirect-file": "file:///etc/passwd"}[self.path])
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            try:
                if self.path == "/huge":
                    for _ in range(200):
                        self.wfile.write(b" " * 65536)
                elif self.path == "/slow":
                    for _ in range(40):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.1)
                else:
                    self.wfile.write(b"<html>not json</html>")
            except OSError:
                pass

    monkeypatch.setattr(hc, "FETCH_TIMEOUT_S", 1.0)
    server = HTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        for path, why in [("/redirect-ftp", "refused a redirect"), ("/redirect-file", "is not allowed"),
                          ("/huge", "more than"), ("/slow", "longer than"), ("/page", "JSON")]:
            t0 = time.monotonic()
            with pytest.raises(click.BadParameter) as e:
                hc.read_node_head(base + path)
            assert why in str(e.value) and time.monotonic() - t0 < 3.0, (path, str(e.value))
    finally:
        server.shutdown()
        server.server_close()
    for source in ["/dev/zero", "file:///etc/passwd", str(tmp_path)]:
        with pytest.raises(click.BadParameter):
            hc.read_node_head(source)

