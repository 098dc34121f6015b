"""`oel ui` in a real browser: headless Debian Chromium driven by Playwright, clicking through the store.

The server is the real `oel ui` command in a subprocess on a free local port;
the browser clicks from the run to an episode, to its run's knowledge version,
to an item's source episode and back, and screenshots the episode page into the
test's temporary folder; with OEL_UPDATE_SCREENSHOT=1 it also replaces
docs/ui-episode.png (the README shows it), so a test run never rewrites a
tracked file unless asked to. Playwright's own browser
download cannot work here, so it drives the system binary; CI installs
Debian's `chromium` package. Without the binary the test is skipped, except
under CI (env CI set), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from memory.store import ExperienceStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = "ui-episode.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(filled):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-c",
        "from oel.cli import main; main()",
        "ui",
        "--db",
        filled,
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own local server
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_a_person_clicks_from_a_run_to_an_episode_to_knowledge_and_back(server, filled, tmp_path) -> None:
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM} (CI is set, so the browser test must run)")
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with ExperienceStore.open(filled) as store:
        run_id = store.get_run("ui")
        source = int(store.read_only_sql("SELECT min(id) FROM episodes WHERE split = 'train'").iloc[0, 0])
        item = store.add_knowledge_item(run_id=run_id, round_id=None, text="move down first",
                                        source_episode_ids=[source])  # fmt: skip
        store.add_knowledge_version(run_id=run_id, round_id=None, text="- move down first", item_ids=[item],
                                    n_tokens=4)  # fmt: skip
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server)
        page.click("a[href='/runs/ui']")  # the run
        assert page.url.endswith("/runs/ui") and page.locator("svg.chart").count() >= 1
        page.click("a[href='/episodes?run=ui']")
        page.click(f'a[href="/episodes/{source}"]')
        assert "Episode" in page.locator("h1").inner_text()
        page.screenshot(path=str(tmp_path / SCREENSHOT), full_page=False)
        page.click("a[href='/runs/ui']")
        page.locator("a[href^='/knowledge/']").last.click()
        assert "Knowledge version" in page.locator("h1").inner_text()
        page.click(f'a[href="/episodes/{source}"]')  # the item's provenance: back to its source episode
        assert page.url.endswith(f"/episodes/{source}")
        browser.close()
    assert (tmp_path / SCREENSHOT).stat().st_size > 10_000
    if os.environ.get("OEL_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(tmp_path / SCREENSHOT, REPO / "docs" / SCREENSHOT)
