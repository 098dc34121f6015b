"""`oel ui` over a real store filled by a real short run: every page, the 404s, escaping, read-only.

The store (`conftest.filled`) comes from a real scored RL loop round of the tiny random Llama
(collection in groups, consolidation, evaluation), a person-written knowledge
version, and a text-mode episode whose reply is hostile HTML, so every page
has something real to render.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from memory.store import ExperienceStore, StoreError
from oel.ui.app import create_app


@pytest.fixture(scope="module")
def client(filled) -> TestClient:
    return TestClient(create_app(filled))


def _links(html: str) -> list[str]:
    return re.findall(r'href="(/[^"]*)"', html)


def test_every_page_renders_from_the_real_run(client) -> None:
    home = client.get("/")
    assert home.status_code == 200 and "<svg" in home.text and "/runs/ui" in home.text
    run = client.get("/runs/ui")
    assert run.status_code == 200 and "held-out pass rate per round" in run.text
    rate = r"\d+\.\d% \[\d+\.\d, \d+\.\d\] \([\d.]+/\d+ tasks; \d+/\d+ episodes\)"
    assert re.search(rate, run.text), "pass rates come with intervals, distinct tasks beside the episodes"
    episodes = client.get("/episodes?run=ui&split=train&sort=return&order=asc")
    assert episodes.status_code == 200 and "9 episodes" in episodes.text
    scored = next(link for link in _links(episodes.text) if re.fullmatch(r"/episodes/\d+", link))
    page = client.get(scored)
    assert page.status_code == 200 and 'class="bars"' in page.text and 'class="tok"' in page.text
    assert "log p = " in page.text and "<details>" in page.text
    group = client.get(f"{scored}/group")
    assert group.status_code == 200 and "advantage" in group.text
    for link in _links(run.text) + _links(client.get("/runs/ui/checkpoints").text):
        assert client.get(link).status_code == 200, link
    knowledge = next(link for link in _links(run.text) if link.startswith("/knowledge/"))
    assert "written by" in client.get(knowledge).text


def test_knowledge_items_link_back_to_the_episodes_they_came_from(filled, client) -> None:
    with ExperienceStore.open(filled) as store:
        run_id = store.get_run("ui")
        episode_id = int(store.read_only_sql("SELECT max(id) FROM episodes WHERE split = 'train'").iloc[0, 0])
        item = store.add_knowledge_item(
            run_id=run_id, round_id=None, text="go down", source_episode_ids=[episode_id]
        )
        version = store.add_knowledge_version(run_id=run_id, round_id=None, text="- go down", item_ids=[item],
                                              n_tokens=3)  # fmt: skip
    page = client.get(f"/knowledge/{version}")
    assert f'href="/episodes/{episode_id}"' in page.text
    assert client.get(f"/knowledge/1/diff/{version}").status_code == 200


def test_model_and_environment_text_is_escaped_everywhere(client) -> None:
    listing = client.get("/episodes?run=ui")
    hostile = next(link for link in _links(listing.text) if re.fullmatch(r"/episodes/\d+", link))
    for url in (hostile, "/episodes?run=ui", f"{hostile}/group", "/knowledge/1"):
        html = client.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>avoid</b>" not in html, url
        assert "<i>ada</i>" not in html, url
    page = client.get(hostile).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "onerror=alert(2)&gt;" in page


@pytest.mark.parametrize(
    ("url", "status"),
    [("/episodes/999999", 404), ("/episodes/999999/group", 404), ("/knowledge/999", 404), ("/runs/nope", 404),
     ("/runs/nope/checkpoints", 404), ("/knowledge/1/diff/999", 404), ("/nothing/here", 404),
     ("/episodes?round=two", 400), ("/episodes?sort=colour", 400)],
)  # fmt: skip
def test_unknown_ids_and_bad_values_get_an_error_page_not_a_traceback(client, url, status) -> None:
    response = client.get(url)
    assert response.status_code == status and "Traceback" not in response.text and "<h1>" in response.text


def test_the_viewer_cannot_write_the_database(filled, client) -> None:
    store = client.app.state.store
    with pytest.raises(Exception, match="readonly|read-only|read only"):
        store.create_run("sneaky")
    with ExperienceStore.open(filled) as writer:
        assert writer.get_run("sneaky") is None
    with pytest.raises(StoreError, match="no such database file"):
        create_app(f"sqlite:///{Path(filled.removeprefix('sqlite:///')).parent / 'missing.db'}")


def test_pages_page_through_episodes(filled, client) -> None:
    first = client.get("/episodes?run=ui&order=asc")
    assert "page 1 of 1" in first.text
    from oel.ui import app as ui_app

    ui_app.PAGE_SIZE, saved = 4, ui_app.PAGE_SIZE
    try:
        pages = [client.get(f"/episodes?run=ui&order=asc&page={p}").text for p in (1, 2)]
    finally:
        ui_app.PAGE_SIZE = saved
    ids = [re.findall(r'href="/episodes/(\d+)"', page) for page in pages]
    assert len(ids[0]) == 4 and len(ids[1]) == 4 and not set(ids[0]) & set(ids[1])
    assert "next &rarr;" in pages[0] and "&larr; previous" in pages[1]


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("0.0.0.0", True),
        ("192.168.1.20", True),
        ("::", True),
        ("myhost", True),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("localhost", False),
    ],
)
def test_serving_beyond_loopback_warns_that_the_store_is_readable_from_the_network(
    tmp_path, monkeypatch, host, warned
) -> None:
    import uvicorn
    from click.testing import CliRunner

    from oel.cli import command

    db = f"sqlite:///{tmp_path / 'oel.db'}"
    ExperienceStore.open(db).close()
    served: list[tuple[str, int]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **_kw: served.append((host, port)))
    result = CliRunner().invoke(command(), ["ui", "--db", db, "--host", host, "--port", "9876"])
    assert result.exit_code == 0, result.output
    assert served == [(host, 9876)]
    warning = f"warning: --host {host} serves the store to the network: anyone who can reach this machine"
    assert (
        (result.stderr.startswith(warning) and result.stderr.count("\n") == 1)
        if warned
        else not result.stderr
    )
    assert f"read-only at http://{host}:9876/" in result.stdout
