"""job.json as a typed record: folders written before it was typed resume; a foreign file is one line."""

import json

import pytest

from distill.checkpointing import JobRecord, ValidationRecord, read_job, write_job
from distill.errors import CheckpointError

# what the untyped job shell wrote (layout 2): optional keys absent, validation without step accuracy
UNTYPED = {
    "layout": 2, "settings": {"method": "credit", "steps": 3}, "consolidation_id": 4, "run_id": 1,
    "round_id": 2, "parent_checkpoint_id": None, "knowledge_version_id": None, "start_path": "/m/start",
    "teacher_path": "/m/start", "hparams": {"method": "credit"}, "steps": 3,
    "validation": {"history": [[0, 0.25], [3, 0.5]], "best_step": 3, "best_rate": 0.5},
}  # fmt: skip


def test_a_record_written_before_the_record_was_typed_loads_and_writes_back_the_same_keys(tmp_path):
    (tmp_path / "job.json").write_text(json.dumps(UNTYPED))
    record = read_job(tmp_path)
    assert record.consolidation_id == 4 and record.steps == 3 and record.checkpoint_id is None
    assert record.outcomes_version_id is None and record.moments_from is None
    assert record.validation == ValidationRecord(history=[[0, 0.25], [3, 0.5]], best_step=3, best_rate=0.5)
    write_job(tmp_path, record)
    again = json.loads((tmp_path / "job.json").read_text())
    assert {k: again[k] for k in UNTYPED if k != "validation"} == {
        k: v for k, v in UNTYPED.items() if k != "validation"
    }
    assert read_job(tmp_path) == record


def test_a_json_object_that_is_not_a_job_record_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "job.json").write_text(json.dumps({"layout": 2, "settings": {}}))
    with pytest.raises(CheckpointError, match="job.json is not a consolidation job record") as err:
        read_job(tmp_path)
    assert "\n" not in str(err.value)
    assert JobRecord.from_json(UNTYPED, tmp_path / "job.json").validation.best_accuracy is None
