"""The `oel ui` web application: one page per thing the store holds, every page addressable by URL.

Stack, and why: Starlette (a small ASGI toolkit; one dependency, no ORM of
its own, served by uvicorn) with server-rendered Jinja2 templates, and SVG
charts drawn on the server (`oel.ui.charts`). Nothing is fetched from a CDN,
so the viewer works offline; there is no JavaScript.

Safety: the store is opened read-only, enforced by the database itself
(`ExperienceStore.open(read_only=True)`); Jinja2 autoescapes every value, and
the only markup passed through unescaped is what `charts` and `tokens` build
after escaping every text they embed. Unknown ids are a 404 page, malformed
query values a 400 page, never a traceback. All reads go through
`memory.queries` and the store's methods (only memory touches SQL).

Pages: `/` runs; `/runs/{name}` its rounds with the pass-rate chart;
`/episodes?run=&round=&split=&env=&won=&checkpoint=&knowledge_version=&sort=&page=`;
`/episodes/{id}` step by step; `/episodes/{id}/group` its GRPO group;
`/knowledge/{id}` a version with items and provenance; `/knowledge/{a}/diff/{b}`;
`/runs/{name}/checkpoints` lineage and consolidations with loss curves.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from memory import queries
from memory.errors import StoreError
from memory.records import CandidateDistribution
from memory.store import ExperienceStore
from oel.conditions import CONDITIONS, LABELS
from oel.run_data import round_results, round_rows, shown_conditions
from oel.ui import charts, tokens

PAGE_SIZE = 100
TEMPLATES = Path(__file__).with_name("templates")


def _blank(value: Any) -> Any:
    """None for missing values (NaN, NaT, None), so templates test one thing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    return value


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _blank(v) for k, v in row.items()} for row in df.to_dict("records")]


class Pages:
    """The request handlers, sharing one read-only store and one template environment."""

    def __init__(self, store: ExperienceStore) -> None:
        self.store = store
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
        )

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(template).render(**context), status_code=status)

    # ------------------------------------------------------------------ helpers

    def _run_id(self, name: str) -> int:
        run_id = self.store.get_run(name)
        if run_id is None:
            raise HTTPException(404, f"there is no run named {name!r}")
        return run_id

    @staticmethod
    def _int(request: Request, key: str) -> int | None:
        raw = request.query_params.get(key)
        if raw in (None, ""):
            return None
        try:
            return int(raw)
        except ValueError:
            raise HTTPException(400, f"{key} must be a whole number, got {raw!r}") from None

    def _pass_chart(self, rows: pd.DataFrame, title: str) -> str:
        series = []
        for name in CONDITIONS:
            if f"pass_{name}" not in rows or not rows[f"pass_{name}"].notna().any():
                continue
            points = [
                (
                    float(r["round"]),
                    float(r[f"pass_{name}"]),
                    _blank(r[f"low_{name}"]),
                    _blank(r[f"high_{name}"]),
                )
                for _i, r in rows.iterrows()
                if _blank(r[f"pass_{name}"]) is not None
            ]
            series.append((LABELS[name], points))
        return charts.line_chart(
            series, title=title, x_label="round", y_label="held-out pass rate", percent=True
        )

    # ------------------------------------------------------------------ pages

    async def runs(self, request: Request) -> HTMLResponse:
        runs = _records(queries.runs(self.store))
        for run in runs:  # the chart needs only the phase results, not the rounds' episodes
            rows = pd.DataFrame(round_results(self.store, run["id"]))
            run["chart"] = self._pass_chart(rows, f"run {run['name']}") if not rows.empty else ""
        return self.render("runs.html", runs=runs)

    async def run(self, request: Request) -> HTMLResponse:
        name = request.path_params["name"]
        run_id = self._run_id(name)
        rows = round_rows(self.store, run_id)
        versions = _records(queries.knowledge_versions(self.store, run_id))
        return self.render(
            "run.html",
            name=name,
            rounds=_records(rows) if not rows.empty else [],
            versions=versions,
            chart=self._pass_chart(rows, "held-out pass rate per round (95% intervals over distinct tasks)")
            if not rows.empty
            else "",
            conditions=shown_conditions(rows) if not rows.empty else [],
            labels=LABELS,
        )

    async def episodes(self, request: Request) -> HTMLResponse:
        params = request.query_params
        filters: dict[str, Any] = {
            "run": params.get("run") or None,
            "split": params.get("split") or None,
            "env": params.get("env") or None,
            "round": self._int(request, "round"),
            "checkpoint": self._int(request, "checkpoint"),
            "knowledge_version": self._int(request, "knowledge_version"),
        }
        won = {"yes": True, "no": False}.get(params.get("won", ""))
        sort = params.get("sort", "id")
        if sort not in queries.PAGE_SORTS:
            raise HTTPException(400, f"sort must be one of {', '.join(queries.PAGE_SORTS)}, got {sort!r}")
        page = max(1, self._int(request, "page") or 1)
        rows, total = queries.episode_page(
            self.store,
            sort=sort,
            descending=params.get("order", "desc") != "asc",
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            won=won,
            **filters,
        )
        keep = {k: v for k, v in params.items() if k != "page" and v}
        pages = max(1, math.ceil(total / PAGE_SIZE))
        return self.render(
            "episodes.html",
            rows=_records(rows),
            total=total,
            page=page,
            pages=pages,
            query=keep,
            sorts=list(queries.PAGE_SORTS),
        )

    def _episode(self, request: Request) -> dict[str, Any]:
        episode_id = int(request.path_params["id"])
        try:
            return {k: _blank(v) for k, v in queries.episode(self.store, episode_id).items()}
        except StoreError:
            raise HTTPException(404, f"there is no episode {episode_id}") from None

    async def episode(self, request: Request) -> HTMLResponse:
        info = self._episode(request)
        path = None
        if info["checkpoint"] is not None:
            path = self.store.checkpoint_info(int(info["checkpoint"]))["path"]
        tokenizer = tokens.tokenizer_for(path)
        steps = []
        for row in _records(queries.transcript(self.store, info["id"])):
            candidates = CandidateDistribution.from_json(row["candidates"]) if row["candidates"] else None
            bars = ""
            if candidates:
                probs = [math.exp(x) for x in candidates.logprobs]
                bars = charts.candidate_bars(candidates.commands, probs, candidates.chosen)
            row["bars"] = bars
            row["tokens"] = tokens.token_spans(row["completion_ids"], row["logprobs"], tokenizer)
            row["parsed"] = (
                "scored candidate" if candidates else _how_parsed(row["completion_text"], row["action"])
            )
            steps.append(row)
        return self.render("episode.html", episode=info, steps=steps)

    async def group(self, request: Request) -> HTMLResponse:
        info = self._episode(request)
        played = queries.episodes(
            self.store,
            run=info["run"],
            round=info["round"],
            split=info["split"],
            env=info["env"],
            checkpoint=info["checkpoint"],
            policy=info["policy"],
            seed=info["seed"],
        )
        rewards = played["total_return"].astype(float)
        std = float(rewards.std(ddof=0)) if len(rewards) else 0.0
        members = _records(played)
        for member, reward in zip(members, rewards, strict=True):
            member["advantage"] = (reward - float(rewards.mean())) / (std + 1e-6) if std > 0 else 0.0
            member["actions"] = list(queries.transcript(self.store, int(member["id"]))["action"])
        return self.render("group.html", episode=info, members=members, informative=std > 0)

    async def knowledge(self, request: Request) -> HTMLResponse:
        version_id = int(request.path_params["id"])
        try:
            version = self.store.knowledge_version(version_id)
        except StoreError:
            raise HTTPException(404, f"there is no knowledge version {version_id}") from None
        items = _records(
            queries.knowledge_items(self.store, version["run_id"], active_only=False, version_id=version_id)
        )
        for item in items:
            item["sources"] = queries.item_sources(self.store, int(item["id"]))
        episodes_by, jobs = queries.version_usage(self.store, version_id)
        versions = _records(queries.knowledge_versions(self.store, version["run_id"]))
        return self.render(
            "knowledge.html",
            version=version,
            items=items,
            usage=_records(episodes_by),
            jobs=_records(jobs),
            others=[v["id"] for v in versions if v["id"] != version_id],
        )

    async def diff(self, request: Request) -> HTMLResponse:
        a, b = int(request.path_params["a"]), int(request.path_params["b"])
        sides = {}
        for v in (a, b):
            try:
                version = self.store.knowledge_version(v)
            except StoreError:
                raise HTTPException(404, f"there is no knowledge version {v}") from None
            frame = queries.knowledge_items(self.store, version["run_id"], active_only=False, version_id=v)
            sides[v] = {int(r["id"]): r for r in _records(frame)}
        rows = [("+", r) for i, r in sides[b].items() if i not in sides[a]]
        rows += [("-", r) for i, r in sides[a].items() if i not in sides[b]]
        rows += [("=", r) for i, r in sides[b].items() if i in sides[a]]
        return self.render("diff.html", a=a, b=b, rows=rows)

    async def checkpoints(self, request: Request) -> HTMLResponse:
        name = request.path_params["name"]
        run_id = self._run_id(name)
        lineage = _records(queries.lineage(self.store, run_id))
        children: dict[Any, list[dict]] = {}
        for row in lineage:
            children.setdefault(row["parent_id"], []).append(row)
        known = {row["id"] for row in lineage}
        roots = [row for row in lineage if row["parent_id"] not in known]
        losses = queries.loss_curves(self.store, run_id)
        jobs = _records(queries.consolidations(self.store, run_id))
        for job in jobs:
            mine = losses[losses["consolidation"] == job["id"]]
            points = [
                (float(s), float((m or {}).get("loss", 0.0)), None, None)
                for s, m in zip(mine["step"], mine["metrics"], strict=True)
            ]
            job["chart"] = charts.line_chart(
                [("loss", points)],
                title=f"consolidation {job['id']} ({job['method']})",
                x_label="step",
                y_label="loss",
            )
        return self.render("checkpoints.html", name=name, roots=roots, children=children, jobs=jobs)


def _how_parsed(reply: str, action: str) -> str:
    """How a text-mode reply became its action, in words (the parser's order, see agent.actions)."""
    from agent.actions import NOOP_ACTION, last_bracketed

    if action == NOOP_ACTION:
        return "nothing usable: noop"
    bracket = last_bracketed(reply)
    if bracket is not None and bracket.strip() == action.strip():
        return "last bracketed group, as written"
    if bracket is not None:
        return "last bracketed group, matched to a command"
    return "the command mentioned last"


async def _error(request: Request, exc: Exception) -> HTMLResponse:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "the server failed on this page"
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return HTMLResponse(
        env.get_template("error.html").render(status=status, detail=detail), status_code=status
    )


def create_app(url: str | None = None) -> Starlette:
    """The application over the store at `url`, opened read-only (StoreError when it cannot be)."""
    store = ExperienceStore.open(url, read_only=True)
    pages = Pages(store)
    routes = [
        Route("/", pages.runs),
        Route("/runs/{name}", pages.run),
        Route("/runs/{name}/checkpoints", pages.checkpoints),
        Route("/episodes", pages.episodes),
        Route("/episodes/{id:int}", pages.episode),
        Route("/episodes/{id:int}/group", pages.group),
        Route("/knowledge/{id:int}", pages.knowledge),
        Route("/knowledge/{a:int}/diff/{b:int}", pages.diff),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        store.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: _error, 500: _error}, lifespan=lifespan)
    app.state.store = store
    return app
