"""Looking inside a DPO policy: TRL's loss on one batch, and the implicit reward as a reward function.

The Direct Alignment lab uses both: the first to check a from-scratch
``dpo_loss`` against TRL on real log-probabilities, the second to judge a
trained policy as a reward model on held-out pairs.
"""

from __future__ import annotations

import warnings

import torch

from rlhf_course.core.sampling import completion_logprobs
from rlhf_course.core.training import evaluating, trl_config
from rlhf_course.direct_alignment.train import direct_arguments, preference_dataset


def trl_loss_on_batch(policy, reference, tokenizer, rows: list[dict], profile, beta: float) -> dict:
    """TRL's DPO loss on one real batch of ``rows``, with the four sequence log-probabilities that produce it.

    Builds a ``DPOTrainer`` for ``policy`` and ``reference``, takes one batch
    (all of ``rows``, at most 64) from its data loader and lets the trainer
    compute the loss. The log-probabilities are computed independently, with
    :func:`rlhf_course.core.sampling.completion_logprobs`, so that the Direct
    Alignment lab's check can ask: fed these numbers, does the learner's
    ``dpo_loss`` give what TRL gave? Returns a dict with ``loss``, ``beta`` and
    ``policy_chosen_logps``, ``policy_rejected_logps``, ``ref_chosen_logps``,
    ``ref_rejected_logps``.
    """
    import tempfile

    from trl import DPOConfig, DPOTrainer

    rows = rows[:64]
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = {**direct_arguments(profile, out, progress=False), "per_device_train_batch_size": len(rows)}
        config = trl_config(DPOConfig, **args, loss_type=["sigmoid"], beta=beta)
        trainer = DPOTrainer(model=policy, ref_model=reference, args=config,
                             train_dataset=preference_dataset(rows, tokenizer), processing_class=tokenizer)
        batch = next(iter(trainer.get_train_dataloader()))
        with evaluating(policy):
            loss = trainer.compute_loss(policy, batch).item()
    prompts = [r["prompt"] for r in rows]
    logps = {f"{who}_{kind}_logps": completion_logprobs(model, tokenizer, prompts, [r[kind] for r in rows])
             for who, model in (("policy", policy), ("ref", reference)) for kind in ("chosen", "rejected")}
    return {"loss": loss, "beta": beta, **logps}


def implicit_reward_function(policy, reference, tokenizer, beta: float, batch_size: int = 64):
    """DPO's implicit reward as a reward function ``(prompts, responses) -> rewards``.

    The reward of a response is β log π_θ(y|x)/π_ref(y|x), the quantity DPO's
    loss treats as a Bradley–Terry reward. Its signature is that of
    ``reward_modeling.reward_function``, so the policy can be scored exactly like a
    reward model (``reward_modeling.evaluate_rewards``): on held-out pairs against
    gold, which measures what DPO learned better than the accuracy TRL logs on
    training batches. Rewards compare responses to the same prompt only.
    """

    def reward_fn(prompts: list[str], responses: list[str]) -> torch.Tensor:
        policy_logps = completion_logprobs(policy, tokenizer, prompts, responses, batch_size=batch_size)
        reference_logps = completion_logprobs(reference, tokenizer, prompts, responses, batch_size=batch_size)
        return beta * (policy_logps - reference_logps)

    return reward_fn
