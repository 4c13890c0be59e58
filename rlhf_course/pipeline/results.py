"""``results.json`` and ``results.md``: reading them back with a clear error, writing them, the Markdown table."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Callable

from rlhf_course.pipeline.stages import POLICY_STAGES, RESULT_FIELDS, RM_FIELDS, STYLE_FIELDS


def load_results(out_dir: str | Path) -> dict:
    """Read ``results.json``, with a clear error if it is not the pipeline's."""
    path = Path(out_dir) / "results.json"
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}). Move it aside or delete it, then run again.") from err
    if not isinstance(results.get("stages"), dict):
        raise ValueError(f"{path} has no 'stages' object; it was not written by `rlhf-course pipeline`. "
                         "Choose another --out folder.")
    return results


def write_results(results: dict, out_dir: str | Path) -> None:
    """Write ``results.json`` (atomically) and ``results.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results["updated"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out / "results.json")
    (out / "results.md").write_text(results_markdown(results))


def results_markdown(results: dict) -> str:
    """The results as Markdown tables: one row per policy, one per reward model, and the Advanced stages' own measures."""
    def fmt(value) -> str:
        return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    stages = results["stages"]
    lines = [f"Profile `{results['profile']}`, seed {results['seed']}, {results['world_size']} process(es).", "",
             "| stage | gold reward | ± s.e. | proxy reward | win rate vs base | win rate vs SFT | KL to ref | seconds "
             "| CPU seconds | judge win rate vs SFT | length-controlled |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in [s for s in POLICY_STAGES if s in stages]:
        lines.append(f"| {name} | " + " | ".join(fmt(stages[name].get(k)) for k in (*RESULT_FIELDS, *STYLE_FIELDS))
                     + " |")
    extras = {"rlaif": ("ai_label_agreement_gold", "ai_pairs"), "distill": ("teacher", "filter_kept_share"),
              "rlvr": ("sft_pass@1", "pass@1")}
    if any(name in stages for name in extras):
        lines += ["", "| stage | measure | value |", "|---|---|---|"]
        lines += [f"| {name} | {key} | {fmt(stages[name].get(key))} |" for name, keys in extras.items()
                  if name in stages for key in keys]
    if "rm" in stages:
        lines += ["", "| reward model | accuracy vs gold | accuracy vs labels | labels vs gold | "
                  "corr. with length | seconds | CPU seconds |", "|---|---|---|---|---|---|---|",
                  "| rm | " + " | ".join(fmt(stages["rm"].get(k)) for k in RM_FIELDS) + " |"]
    return "\n".join(lines + real_data_lines(stages, fmt)) + "\n"


def real_data_lines(stages: dict, fmt: Callable) -> list[str]:
    """Markdown lines for the stages trained on a real dataset: the data, held-out accuracy, judge win rates."""
    real = {name: entry["data"] for name, entry in stages.items() if isinstance(entry.get("data"), dict)}
    if not real:
        return []
    lines = ["", "Trained on real data (no gold there; the toy world's gold measurements are above):", ""]
    for name, data in real.items():
        lines.append(f"- {name}: {data['source']} [{data['split']}], {data['rows_used']} rows used, "
                     f"{data['rows_skipped']} skipped")
    if "rm_accuracy_heldout" in stages.get("rm", {}):
        lines.append(f"- rm accuracy on held-out pairs: {fmt(stages['rm']['rm_accuracy_heldout'])} "
                     f"({stages['rm']['heldout_pairs']} pairs)")
    lines += [f"- {name} on held-out prompts: reward-model score {fmt(entry['real_data_eval']['rm_score'])}, "
              f"win rate vs SFT {fmt(entry['real_data_eval']['win_rate_vs_reference'])} "
              f"({entry['real_data_eval']['judge']})" for name, entry in stages.items() if "real_data_eval" in entry]
    return lines
