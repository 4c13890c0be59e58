"""The code of the Preference Data chapter (``book/preference_data.md``, ``labs/preference_data.ipynb``).

- data.py: hub adapters (HH-RLHF, SHP, UltraFeedback), the one validator of preference rows, JSONL files
- annotation.py: a widget to label pairs yourself, and agreement with gold and the annotators
- sources.py: preference_dataset, one loader for a hub dataset or local files in its schema;
  dataset_prompts, its distinct prompts (what the RL stages optimise on with real data)
- toy.py: toy-world preference rows
- formats.py: preference rows as the datasets TRL's trainers read
- checks.py: the lab's exercise checks

The chapter's public names are importable from here::

    from rlhf_course import preference_data
"""

from .annotation import (AnnotationFileError, AnnotationSession, LABELS, LARGE_MARGIN, agreement_with_annotators,
                         agreement_with_gold, make_annotation_pairs, simulated_choice)
from .data import (ADAPTER_SKIP_HINT, FIELDS, HH_ASSISTANT, HH_HUMAN, HubPreferences, MODES, PreferenceDataError,
                   PreferenceRows, Problem, ROLES, SHP_METADATA, SKIP_HINT, ULTRAFEEDBACK_METADATA, ValidationReport,
                   check_training_rows, field_text, from_hh_rlhf, from_shp, from_ultrafeedback, hh_messages,
                   hub_preferences, load_preference_files, load_preferences, prompt_length, read_preferences_jsonl,
                   same_response, split_hh_pair, validate_preferences, write_preferences_jsonl)
from .sources import LoadedPreferences, dataset_prompts, detect_schema, preference_dataset
from .formats import to_reward_dataset, unpaired_dataset
from .toy import toy_pairs, toy_preferences

__all__ = [
    "AnnotationFileError",
    "AnnotationSession",
    "LABELS",
    "LARGE_MARGIN",
    "agreement_with_annotators",
    "agreement_with_gold",
    "make_annotation_pairs",
    "simulated_choice",
    "ADAPTER_SKIP_HINT",
    "FIELDS",
    "HH_ASSISTANT",
    "HH_HUMAN",
    "HubPreferences",
    "MODES",
    "PreferenceDataError",
    "PreferenceRows",
    "Problem",
    "ROLES",
    "SHP_METADATA",
    "SKIP_HINT",
    "ULTRAFEEDBACK_METADATA",
    "ValidationReport",
    "check_training_rows",
    "field_text",
    "from_hh_rlhf",
    "from_shp",
    "from_ultrafeedback",
    "hh_messages",
    "hub_preferences",
    "load_preference_files",
    "load_preferences",
    "prompt_length",
    "read_preferences_jsonl",
    "same_response",
    "split_hh_pair",
    "validate_preferences",
    "write_preferences_jsonl",
    "LoadedPreferences",
    "detect_schema",
    "preference_dataset",
    "dataset_prompts",
    "to_reward_dataset",
    "unpaired_dataset",
    "toy_pairs",
    "toy_preferences",
]
