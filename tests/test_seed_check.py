"""The second seed, recorded by `make seeds`, meets today's thresholds (see tests/seed_check.py)."""

from __future__ import annotations

from seed_check import SEED_CHECK_FILE, load_seed_check
from test_notebooks import EXPECTATIONS, failed_expectations
from test_sft_pipeline import pipeline_problems


def test_the_pipeline_seed_that_ci_skips_is_recorded_and_meets_the_thresholds():
    runs = load_seed_check().get("pipeline", {})
    assert "0" in runs, f"{SEED_CHECK_FILE.name} has no pipeline run at seed 0: run `make seeds`"
    for seed, entry in runs.items():
        problems = pipeline_problems(entry["measured"])
        assert not problems, f"pipeline, seed {seed} (commit {entry['commit']}): " + "; ".join(problems)


def test_every_recorded_lab_seed_meets_the_lab_thresholds():
    labs = {kind: seeds for kind, seeds in load_seed_check().items() if kind != "pipeline"}
    unknown = sorted(set(labs) - set(EXPECTATIONS))
    assert not unknown, f"{SEED_CHECK_FILE.name} records labs that have no thresholds: {unknown}"
    for lab, seeds in labs.items():
        for seed, entry in seeds.items():
            problems = failed_expectations(entry["measured"], EXPECTATIONS[lab])
            assert not problems, f"{lab}, seed {seed} (commit {entry['commit']}): " + "; ".join(problems)
