"""`rappel serve --workers 2`: two server processes on one port, one site. A member of staff signs in
through one of them and stays signed in whichever answers next (sessions live in the database); a
sign-out ends the session for both. Real processes, real HTTP (httpx), the web tests' site
(tests/web_site.py), SQLite."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from delivery_site import free_port
from web_site import PASSWORD, make_site


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="counts the worker processes through /proc")
def test_two_workers_share_the_sessions(tmp_path):
    site = make_site(tmp_path)
    site.close()
    port = free_port()
    rappel = Path(sys.executable).with_name("rappel")
    log = tmp_path / "serve.log"
    err = log.open("wb")
    server = subprocess.Popen([str(rappel), "serve", "--port", str(port), "--workers", "2", "--insecure-cookies",
                               "--rules", str(site.rules_dir), "--db", site.db_url, "--outbox", str(tmp_path / "out"),
                               "--state-dir", str(site.state_dir)],
                              env={**os.environ, "RAPPEL_STATE_DIR": str(site.state_dir)},
                              stdout=subprocess.DEVNULL, stderr=err)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/login", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "rappel serve --workers 2 did not start"
                time.sleep(0.3)
        deadline = time.monotonic() + 30
        while len(children(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(children(server.pid)) >= 2              # the two workers (uvicorn's supervisor is the parent)
        with httpx.Client(base_url=base, follow_redirects=False) as client:
            client.get("/login")
            r = client.post("/login", data={"name": "desk", "password": PASSWORD, "next": "/",
                                            "csrf_token": client.cookies.get("rappel_login_csrf")})
            assert r.status_code == 303, r.text[:300]
            # new connections, so the kernel spreads them over both workers: each one knows the session
            answers = []
            for _ in range(16):
                with httpx.Client(base_url=base, cookies=client.cookies, follow_redirects=False) as fresh:
                    answers.append(fresh.get("/?q=lef").status_code)
            assert answers == [303] * 16                     # one match: to the patron's page, signed in
            page = client.get("/?q=zzz").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            assert client.post("/logout", data={"csrf_token": token}).status_code == 303
            for _ in range(6):
                with httpx.Client(base_url=base, cookies=client.cookies, follow_redirects=False) as fresh:
                    assert fresh.get("/?q=lef").headers["location"].startswith("/login")
    finally:
        server.terminate()
        server.wait(30)
        err.close()
