"""`rlhf-course benchmark labs`: every lab executed in a kernel of its own, with what it cost."""

from __future__ import annotations

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from rlhf_course.tools.benchmark import benchmark_labs, labs_markdown, rm_sizes_markdown


def _lab(path, body: str):
    nb = new_notebook(cells=[new_code_cell('PROFILE = "auto"\nSEED = 0', metadata={"tags": ["parameters"]}),
                             new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_benchmark_labs_records_each_labs_seconds_and_names_a_failing_one(tmp_path, kernel_env, monkeypatch):
    for key, value in kernel_env.items():
        monkeypatch.setenv(key, value)
    good = _lab(tmp_path / "busy.ipynb", "from rlhf_course.core import results\n"
                "with results.spending('sampling'):\n    sum(i * i for i in range(3_000_000))\n"
                "results.record_outcome('busy', {'x': 1}, profile=PROFILE, seed=SEED)")
    bad = _lab(tmp_path / "broken.ipynb", "raise ValueError('deliberate')")
    result = benchmark_labs(seed=1, out=tmp_path / "out", labs=[good, bad])
    busy, broken = result["labs"]["busy"], result["labs"]["broken"]
    assert busy["ok"] and busy["wall"] >= busy["sampling"] > 0 and busy["cpu"] > 0, busy
    assert busy["own"] == busy["wall"], "a lab that trains no shared model owns all its seconds"
    assert not broken["ok"] and "deliberate" in broken["error"]
    table = labs_markdown(result)
    assert "| busy |" in table and "failed: " in table


def test_rm_sizes_table_has_a_row_per_pair_count_and_a_column_per_measured_epoch():
    point = lambda epoch, accuracy, seconds: {"step": 0, "epoch": epoch, "rm_accuracy_gold": accuracy,
                                              "train_cpu_seconds": seconds}
    result = {"seed": 1, "n_test_pairs": 1929, "runs": {"5000": [point(1.0, 0.6789, 59.4), point(2.0, 0.72, 118)],
                                                        "20000": [point(1.0, 0.75, 240)]}}
    lines = rm_sizes_markdown(result).splitlines()
    assert "seed 1" in lines[0] and "1929 held-out pairs" in lines[0]
    assert lines[2] == "| pairs | epoch 1 | epoch 2 |"
    assert lines[4] == "| 5,000 | 0.679 (59 s) | 0.720 (118 s) |"
    assert lines[5] == "| 20,000 | 0.750 (240 s) | – |", "an epoch a run did not reach is a dash"
