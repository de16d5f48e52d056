"""The service beside an import or a SuperNode: a held write lock makes a write wait briefly, then fail
with a clear 503 (never a "database is locked" traceback), and nothing of the request is stored."""

from __future__ import annotations

import threading
import time

from node.service import members
from tests.node.service.conftest import sharelm


def test_a_locked_store_gives_a_clear_503_and_stores_nothing(client, svc_node):
    r = client.post("/api/v1/members", json={"invite": members.create_invites(svc_node.path, 1)[0]})
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    holding, release = threading.Event(), threading.Event()

    def hold():  # another process's long write transaction (an import, a federation round)
        with svc_node.open_store() as store, store.transaction():
            holding.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(10)
        start = time.monotonic()
        r = client.post("/api/v1/contributions", json=sharelm(), headers=h)
        waited = time.monotonic() - start
    finally:
        release.set()
        t.join()
    assert r.status_code == 503, r.text
    assert "busy" in r.json()["detail"] and "locked" not in r.text and "Traceback" not in r.text
    assert r.headers["retry-after"]
    assert waited < 15
    with svc_node.open_store() as store:
        assert store.conn.execute("SELECT COUNT(*) FROM contributions").fetchone()[0] == 0
    assert client.post("/api/v1/contributions", json=sharelm(), headers=h).status_code == 201  # free again
