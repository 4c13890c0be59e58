"""Where a run's files live, and the cache of shared models.

Every folder the course trains into is named here, so that a lab, the
``rlhf-course pipeline`` command and the test suite find one another's models:

``runs_root()``
    ``$RLHF_COURSE_RUNS`` if set; otherwise ``runs/`` at the root of the source
    checkout the package was imported from (whatever the working directory: a
    lab executed from ``labs/`` and a command run from the root share it); for
    an installed package (Colab), ``~/.cache/rlhf_course/runs``.
``lab_dir(lab)``
    what one lab trains for itself: ``<root>/labs/<lab>``.
``lab_run_dir(lab, name, seed, *settings)``
    one of those runs: ``<root>/labs/<lab>/<name>-seed<seed>-<digest>``, where
    the digest is a hash of the settings that change it. A lab re-run after a
    disconnect passes the same folder to the same training, which resumes from
    its last checkpoint (the profile's ``checkpoint_steps``); other settings
    get another folder, so a checkpoint is only ever continued by its own run.
``shared_dir(kind, settings)``
    a model that several labs (or a lab and the pipeline) use:
    ``<root>/shared/<kind>-<digest>``, where the digest is a hash of every
    setting that changes the model. Other settings get another folder, so
    nothing trained earlier is overwritten.

:func:`cached` trains a shared model once, under a file lock (two labs
executed side by side wait for each other instead of training the same model
twice), and saves a JSON record beside it (its training log, its seconds);
later calls return the folder and the record at once. In a notebook the
training leaves no output behind (:func:`quietly`), so a lab's page is the
same whether it trained the model or found it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

RUNS_ENV = "RLHF_COURSE_RUNS"
RECORD = "course_record.json"  # beside a shared model: its settings, training log and seconds


def runs_root() -> Path:
    """The folder under which every run is saved (see the module docstring)."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").exists() and (checkout / "labs").is_dir():
        return checkout / "runs"
    from rlhf_course.core.models import cache_dir

    return cache_dir() / "runs"


def display_path(path: str | Path) -> str:
    """``path`` as a lab shows it: relative to the runs folder (``runs/shared/sft-…/final``), never the machine's
    absolute path, which would name the home folder of whoever built the page."""
    path, root = Path(path), runs_root()
    try:
        return str(Path("runs") / path.resolve().relative_to(root.resolve()))
    except ValueError:
        return path.name


def lab_dir(lab: str) -> Path:
    """The folder of what lab ``lab`` trains for itself (its sweeps, its own variants)."""
    return runs_root() / "labs" / lab


def lab_run_dir(lab: str, name: str, seed: int, *settings: Any) -> Path:
    """The folder of lab ``lab``'s own run ``name``, named by its seed and a digest of ``settings``.

    ``settings`` are whatever changes the run: the profile (or one stage's
    settings), the folder of the model it starts from, a method's name. Pass
    the result as the training's ``output_dir``: the run checkpoints there at
    the profile's interval, and the same call after a lost runtime resumes
    from the last checkpoint (and says so) instead of starting again.
    """
    digest = settings_digest({"seed": seed, "settings": [_changes_the_model(value) for value in settings]})
    return lab_dir(lab) / f"{name}-seed{seed}-{digest}"


def _changes_the_model(value: Any) -> Any:
    """``value`` as JSON-able data, less the settings (at any depth) that do not change a trained model."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _changes_the_model(getattr(value, f.name)) for f in fields(value) if f.name not in NOT_IN_KEY}
    if isinstance(value, dict):
        return {str(k): _changes_the_model(v) for k, v in value.items() if k not in NOT_IN_KEY}
    if isinstance(value, (list, tuple)):
        return [_changes_the_model(v) for v in value]
    if isinstance(value, Path):
        return str(value.resolve())
    if callable(value):  # a reward function, say, perhaps the learner's own: its name and its compiled code
        code = getattr(value, "__code__", None)
        return {"function": getattr(value, "__qualname__", type(value).__qualname__),
                "code": None if code is None else _code_digest(code)}
    return value


def _code_digest(code: Any) -> str:
    """A hash of a function's bytecode and constants (nested functions included): it changes when the code does."""
    consts = [_code_digest(c) if hasattr(c, "co_code") else repr(c) for c in code.co_consts]
    return settings_digest({"code": code.co_code.hex(), "consts": consts, "names": list(code.co_names)})


# how often a run saves, how much is measured: same model; which engine generates (vLLM or generate) and the splits
# of a real dataset (read only by the pipeline's real-data stages, never by the shared, toy-world models) neither
NOT_IN_KEY = ("checkpoint_steps", "n_eval_pairs", "use_vllm", "vllm_mode", "split", "eval_split")


def model_settings(stage_settings: Any) -> dict[str, Any]:
    """A stage's settings (a dataclass such as ``profile.sft``) less those that do not change the trained model."""
    from dataclasses import asdict

    return {key: value for key, value in asdict(stage_settings).items() if key not in NOT_IN_KEY}


def settings_digest(settings: dict[str, Any]) -> str:
    """A short hash of JSON-able ``settings``: equal settings, equal digest, whatever the key order."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def shared_dir(kind: str, settings: dict[str, Any]) -> Path:
    """The folder of the shared model ``kind`` (``"sft"``, ``"rm"``, ``"rloo"`` …) trained with ``settings``."""
    return runs_root() / "shared" / f"{kind}-{settings_digest(settings)}"


@contextmanager
def lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>.lock`` while a shared model is looked for and, if need be, trained.

    Two labs open at once (or run side by side by the test suite) may both ask
    for the same model; the second waits for the first to finish training and
    then reuses its model instead of training into the same folder at once.
    """
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        yield


def read_record(folder: Path) -> dict[str, Any] | None:
    """The record saved beside a shared model, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((Path(folder) / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def record_of(final: str | Path, maker: str) -> dict[str, Any]:
    """The record saved beside a shared model's ``final`` folder; ``maker`` names the function that saves it."""
    record = read_record(Path(final).parent)
    if record is None:
        raise FileNotFoundError(f"{Path(final).parent} holds no {RECORD}: the model at {final} was not saved by "
                                f"{maker}. Call {maker}(profile, seed) to train (or find) it, and pass the folder "
                                "it returns.")
    return record


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block from the random state ``seed`` gives, and leave the caller's random state as it was.

    A shared model is then the same whichever lab trains it, after whatever
    that lab did before; and the lab goes on with the same random numbers
    whether it trained the model or found it in the cache.
    """
    import random

    import numpy as np
    import torch
    from transformers import set_seed

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        set_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a lab run in Jupyter, Colab, or by papermill and the book build)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ != "TerminalInteractiveShell"


@contextmanager
def quietly(what: str) -> Iterator[None]:
    """Train something shared without leaving its log in a notebook: the page is the same, trained or found.

    A shared model (and the tiny base model) is trained by whichever lab asks
    for it first. In a Jupyter kernel, everything the block prints or displays
    (progress bars, trainer logs, warnings) is captured, and one status line,
    ``what``, shows while it runs; the line is removed at the end, so a lab's
    page does not depend on the order in which labs ran. In a terminal or a
    script the block runs as it is, with its progress bars.
    """
    if not in_notebook():
        yield
        return
    import html

    from IPython.display import HTML, display
    from IPython.utils.capture import capture_output

    status = display(HTML(f"<p><em>{html.escape(what)} (once; later labs reuse it) …</em></p>"), display_id=True)
    captured = None
    try:
        with capture_output(stdout=True, stderr=True, display=True) as captured:
            yield
    except BaseException:
        if captured is not None:  # a training that failed shows what it printed, to find out why
            captured.show()
        raise
    finally:
        if status is not None:
            status.update(HTML(""))


def cached(kind: str, settings: dict[str, Any], train: Callable[[Path], dict[str, Any]], seed: int,
           folder: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The shared model ``kind`` with ``settings``: trained once by ``train(folder)``, then reused.

    ``train`` trains into ``folder`` (saving the model under ``folder/final``)
    and returns a JSON-able record of the run (its log, for example); it runs
    from the random state ``seed`` gives (:func:`seeded`). The record is
    written last, with the settings, so a run killed half-way is trained again
    rather than read half-saved. ``folder`` defaults to :func:`shared_dir`; a
    folder given explicitly is retrained when its saved settings differ.
    Returns ``(folder / "final", record)``.
    """
    from rlhf_course.core.results import spending

    folder = Path(folder) if folder is not None else shared_dir(kind, settings)
    with lock(folder):
        record = read_record(folder)
        if (record is not None and (folder / "final").is_dir()
                and record.get("settings") == json.loads(json.dumps(settings, default=str))):
            return folder / "final", record
        with spending("shared models"), seeded(seed), quietly(f"Training the shared {kind} model"):
            start = time.perf_counter()
            run = train(folder)
            record = {"kind": kind, "settings": settings, "seconds": time.perf_counter() - start, **run}
        tmp = folder / (RECORD + ".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
        tmp.replace(folder / RECORD)
    return folder / "final", json.loads(json.dumps(record, default=str))
