"""SELECT to DataFrame: the two helpers every read module of the store shares.

The reads are split by aggregate (`memory.episode_reads`, `memory.run_reads`,
`memory.round_reads`, `memory.knowledge_reads`, `memory.consolidation_reads`,
re-exported as `memory.queries`); what they have in common is only how a
statement's rows become a DataFrame and how packed token columns are
unpacked, so that is all this module holds.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import Select

from memory.codec import decode_ids, decode_logprobs
from memory.store import ExperienceStore

_BLOB_DECODERS = {"prompt_ids": decode_ids, "completion_ids": decode_ids, "logprobs": decode_logprobs}


def frame(store: ExperienceStore, stmt: Select) -> pd.DataFrame:
    """Run a SELECT and return its rows as a DataFrame (columns kept even when empty)."""
    with store.reading() as conn:
        result = conn.execute(stmt)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def decode_blobs(df: pd.DataFrame) -> pd.DataFrame:
    """Turn packed token-id and log-prob columns into Python lists (None stays None)."""
    for column, decode in _BLOB_DECODERS.items():
        if column in df.columns:
            df[column] = [decode(blob) for blob in df[column]]
    return df
