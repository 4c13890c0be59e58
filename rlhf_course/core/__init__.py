"""What every stage shares, below the chapters.

- profiles.py: the four sizes (tiny, smol, colab-t4, multi-gpu) and their settings
- models.py: building, loading and caching the models
- sampling.py: chat prompts, sampling, and log-probabilities of completions
- rollout.py: rollouts for the RL stages (sample, score, log-probs), micro-batches
- vllm_generation.py: vLLM for rollouts when installed and asked for (profile.rl.use_vllm), else model.generate
- training.py: the TRL set-up every trainer shares (arguments, fit, LoRA)
- distributed.py: rank, world size, main process, averaging over processes
- evaluation.py: judging a policy against a reference (win rate, KL, samples)
- runs.py: the run layout and the cache of shared models
- results.py: lab outcomes and the time they cost
"""
