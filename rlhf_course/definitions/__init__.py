"""Chapter "Definitions": the course's formulas, computed and checked on a real model.

Start with :func:`~rlhf_course.definitions.logprobs.sequence_logprob`, the chain
rule that every other formula of the chapter builds on, then
:func:`~rlhf_course.definitions.logprobs.frequency_check`, which checks that the
number it gives is the chance that the sampler writes that response.
:mod:`rlhf_course.definitions.checks` holds the lab's exercise checks.
"""

from rlhf_course.definitions import checks
from rlhf_course.definitions.logprobs import FrequencyCheck, frequency_check, sequence_logprob

__all__ = ["FrequencyCheck", "checks", "frequency_check", "sequence_logprob"]
