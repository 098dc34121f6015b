"""Knowledge a person writes: a Markdown file of `- EXPERIENCE ITEM:` lines stored as a knowledge version.

OPCD's second application is system-prompt distillation: the knowledge need
not come from the policy's own trajectories. A person's rules (or another
model's) are stored exactly like extracted knowledge, so `oel eval
--knowledge ID`, `oel consolidate --knowledge ID` and the loop use them
unchanged; only the provenance differs: each item records its `author` and
no source episodes, and the version's kind is `authored`.

The file is parsed with the extractor's own item parser (`parse.split_items`),
so a line counts as an item exactly when an extracted one would; lines that
are not items (headings, prose) are ignored, and items are stored in file
order. Junk filters meant for a model's replies (copied text, map
restatements, the two-items-per-reply limit) do not apply to a person's file.
Adding the same text again to the same run returns the stored version, so a
loop that reads the file every round creates it once.

Bad input gets one line: an empty or unreadable file, a file without any
item, a knowledge text over the token cap.
"""

from __future__ import annotations

from pathlib import Path

from memory.knowledge.accumulate import KnowledgeEntry, render_lines
from memory.knowledge.errors import KnowledgeError
from memory.knowledge.generator import TokenCounter, approx_token_count
from memory.knowledge.parse import split_items
from memory.store import ExperienceStore

PROMPT_VERSION = "authored"
"""The `prompt_version` of a person-written item: no extraction prompt made it."""


def read_items(path: str | Path) -> list[str]:
    """The items of a knowledge file, in order; KnowledgeError for an unreadable, empty or item-less file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"cannot read the knowledge file {path}: {exc}") from None
    if not text.strip():
        raise KnowledgeError(f"the knowledge file {path} is empty")
    items = [item for item in split_items(text) if item.strip()]
    if not items:
        raise KnowledgeError(
            f"the knowledge file {path} holds no items: write one rule per line as '- EXPERIENCE ITEM: ...'"
        )
    return list(dict.fromkeys(items))


def add_authored_knowledge(
    store: ExperienceStore,
    run_id: int,
    items: list[str],
    *,
    author: str,
    round_id: int | None = None,
    count_tokens: TokenCounter | None = None,
    token_cap: int = 2048,
    source: str | None = None,
) -> tuple[int, str, bool]:
    """Store `items` as an authored knowledge version of run `run_id`; return (version id, text, created).

    `created` is False when the run already has an authored version with the same text.
    """
    text = render_lines([KnowledgeEntry(text=item) for item in items])
    existing = store.latest_knowledge_version(run_id, kinds=("authored",))
    if existing is not None and existing[1] == text:
        return existing[0], text, False
    n_tokens = (count_tokens or approx_token_count)(text)
    if n_tokens > token_cap:
        raise KnowledgeError(f"the knowledge takes {n_tokens} tokens, over the {token_cap}-token cap")
    item_ids = [
        store.add_knowledge_item(
            run_id=run_id, round_id=round_id, text=item, author=author, prompt_version=PROMPT_VERSION
        )
        for item in items
    ]
    meta = {"author": author, "source": source, "token_count": "tokenizer" if count_tokens else "chars/4"}
    version_id = store.add_knowledge_version(
        run_id=run_id, round_id=round_id, text=text, item_ids=item_ids, n_tokens=n_tokens, kind="authored",
        meta=meta,
    )  # fmt: skip
    return version_id, text, True
