"""A timeline of the works that shaped RLHF, as data and as a plotly figure.

The "Seminal Works" page of the book draws :func:`timeline_figure`. Each
:class:`Milestone` names the paper (with its arXiv page and its key in
``book/references.bib``), the idea it contributed, and the chapter of this
course where that idea is run. A test checks that every entry has an https
link, a bibliography key that exists, and that the list is in date order.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import plotly.graph_objects as go

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: The chapters of the course, existing or planned, by file name: the values of
#: :attr:`Milestone.chapter`.
CHAPTERS = {
    "introduction": "Introduction",
    "what_are_preferences": "What Are Preferences",
    "optimization_rl": "Optimization and RL",
    "seminal_works": "Seminal Works",
    "definitions": "Definitions",
    "preference_data": "Preference Data",
    "reward_modeling": "Reward Modeling",
    "regularization": "Regularization",
    "instruction_tuning": "Instruction Tuning",
    "rejection_sampling": "Rejection Sampling",
    "policy_gradients": "Policy Gradients",
    "ppo": "Proximal Policy Optimization",
    "direct_alignment": "Direct Alignment",
    "constitutional_ai": "Constitutional AI",
    "synthetic_data": "Synthetic Data",
    "evaluation": "Evaluation",
    "reasoning": "Reasoning",
    "over_optimization": "Over-optimisation",
    "style": "Style",
}

#: What kind of contribution a work made: the colours of the timeline.
THEMES = (
    "Foundations",
    "RLHF for language models",
    "Assistants",
    "Direct alignment",
    "Verifiable rewards",
)


@dataclass(frozen=True)
class Milestone:
    """One work on the timeline."""

    year: int
    month: int  # 1-12, the month of the first arXiv version
    short: str  # the name on the timeline, e.g. "InstructGPT"
    title: str
    authors: str  # e.g. "Ouyang et al."
    url: str  # the arXiv abstract page
    key: str  # the BibTeX key in book/references.bib
    theme: str  # one of THEMES, the colour on the timeline
    idea: str  # what it contributed, in one sentence
    chapter: str  # the course chapter (a key of CHAPTERS) where the idea is run

    @property
    def date(self) -> str:
        """Mid-month ISO date, where the point sits on the time axis."""
        return f"{self.year:04d}-{self.month:02d}-15"

    @property
    def when(self) -> str:
        """E.g. "Mar 2022"."""
        return f"{MONTHS[self.month - 1]} {self.year}"


MILESTONES: tuple[Milestone, ...] = (
    Milestone(
        2017, 6, "Deep RL from human preferences",
        "Deep Reinforcement Learning from Human Preferences", "Christiano et al.",
        "https://arxiv.org/abs/1706.03741", "christiano2017deep", "Foundations",
        "Fit a reward model to human comparisons of short clips, then train an agent on it with deep RL.",
        "reward_modeling",
    ),
    Milestone(
        2017, 7, "PPO",
        "Proximal Policy Optimization Algorithms", "Schulman et al.",
        "https://arxiv.org/abs/1707.06347", "schulman2017ppo", "Foundations",
        "A clipped policy-gradient update that became the default optimiser of RLHF.",
        "ppo",
    ),
    Milestone(
        2019, 9, "Fine-tuning LMs",
        "Fine-Tuning Language Models from Human Preferences", "Ziegler et al.",
        "https://arxiv.org/abs/1909.08593", "ziegler2019finetuning", "RLHF for language models",
        "The recipe moves to language models, with a KL penalty that keeps the policy near the pretrained one.",
        "optimization_rl",
    ),
    Milestone(
        2020, 9, "Learning to summarise",
        "Learning to Summarize from Human Feedback", "Stiennon et al.",
        "https://arxiv.org/abs/2009.01325", "stiennon2020summarize", "RLHF for language models",
        "SFT, reward model, then PPO beats supervised summaries; too little KL over-optimises the reward model.",
        "reward_modeling",
    ),
    Milestone(
        2021, 12, "WebGPT",
        "WebGPT: Browser-assisted Question-answering with Human Feedback", "Nakano et al.",
        "https://arxiv.org/abs/2112.09332", "nakano2021webgpt", "RLHF for language models",
        "Best-of-n sampling against a reward model rivals RL at a fraction of the complexity.",
        "rejection_sampling",
    ),
    Milestone(
        2022, 3, "InstructGPT",
        "Training Language Models to Follow Instructions with Human Feedback", "Ouyang et al.",
        "https://arxiv.org/abs/2203.02155", "ouyang2022instructgpt", "Assistants",
        "The three-step recipe (SFT, reward model, PPO) for a general instruction-following assistant.",
        "instruction_tuning",
    ),
    Milestone(
        2022, 4, "Anthropic HH",
        "Training a Helpful and Harmless Assistant with RLHF", "Bai et al.",
        "https://arxiv.org/abs/2204.05862", "bai2022hh", "Assistants",
        "Helpfulness and harmlessness preference data, collected in rounds on the latest policy.",
        "preference_data",
    ),
    Milestone(
        2022, 9, "Sparrow",
        "Improving Alignment of Dialogue Agents via Targeted Human Judgements", "Glaese et al.",
        "https://arxiv.org/abs/2209.14375", "glaese2022sparrow", "Assistants",
        "Rule reward models, trained on judgements of whether a reply breaks a given written rule, "
        "next to a preference reward model.",
        "reward_modeling",
    ),
    Milestone(
        2022, 12, "Constitutional AI",
        "Constitutional AI: Harmlessness from AI Feedback", "Bai et al.",
        "https://arxiv.org/abs/2212.08073", "bai2022constitutional", "Assistants",
        "A model labels preferences itself, guided by a written list of principles (RLAIF).",
        "constitutional_ai",
    ),
    Milestone(
        2023, 5, "DPO",
        "Direct Preference Optimization", "Rafailov et al.",
        "https://arxiv.org/abs/2305.18290", "rafailov2023dpo", "Direct alignment",
        "The KL-regularised optimum turns preference learning into a classification loss: no reward model, no RL loop.",
        "direct_alignment",
    ),
    Milestone(
        2023, 7, "Llama 2",
        "Llama 2: Open Foundation and Fine-Tuned Chat Models", "Touvron et al.",
        "https://arxiv.org/abs/2307.09288", "touvron2023llama2", "Assistants",
        "Margin loss for graded preferences, two reward models, rejection sampling followed by PPO.",
        "reward_modeling",
    ),
    Milestone(
        2023, 9, "RLAIF vs. RLHF",
        "RLAIF vs. RLHF: Scaling Reinforcement Learning from Human Feedback with AI Feedback", "Lee et al.",
        "https://arxiv.org/abs/2309.00267", "lee2023rlaif", "Assistants",
        "Preferences labelled by an off-the-shelf LLM train policies that people rate on a par with RLHF.",
        "constitutional_ai",
    ),
    Milestone(
        2023, 10, "Zephyr",
        "Zephyr: Direct Distillation of LM Alignment", "Tunstall et al.",
        "https://arxiv.org/abs/2310.16944", "tunstall2023zephyr", "Direct alignment",
        "An open recipe: SFT on synthetic dialogues, then DPO on preferences labelled by a stronger model.",
        "direct_alignment",
    ),
    Milestone(
        2024, 2, "DeepSeekMath (GRPO)",
        "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models", "Shao et al.",
        "https://arxiv.org/abs/2402.03300", "shao2024deepseekmath", "Verifiable rewards",
        "GRPO: advantages relative to a group of samples for the same prompt replace the value model.",
        "policy_gradients",
    ),
    Milestone(
        2024, 11, "Tülu 3",
        "Tülu 3: Pushing Frontiers in Open Language Model Post-Training", "Lambert et al.",
        "https://arxiv.org/abs/2411.15124", "lambert2024tulu3", "Verifiable rewards",
        "A fully open post-training recipe: SFT, then DPO, then RL with verifiable rewards.",
        "reasoning",
    ),
    Milestone(
        2024, 12, "OpenAI o1",
        "OpenAI o1 System Card", "OpenAI",
        "https://arxiv.org/abs/2412.16720", "openai2024o1", "Verifiable rewards",
        "A model trained with large-scale RL to reason in a long chain of thought before it answers.",
        "reasoning",
    ),
    Milestone(
        2025, 1, "DeepSeek-R1",
        "DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via Reinforcement Learning", "DeepSeek-AI",
        "https://arxiv.org/abs/2501.12948", "deepseek2025r1", "Verifiable rewards",
        "Large-scale RL on checkable answers makes long chains of reasoning emerge.",
        "reasoning",
    ),
    Milestone(
        2025, 1, "Kimi k1.5",
        "Kimi k1.5: Scaling Reinforcement Learning with LLMs", "Kimi Team",
        "https://arxiv.org/abs/2501.12599", "kimi2025k15", "Verifiable rewards",
        "An open report of long-chain-of-thought RL without a value model, "
        "with a length penalty and long-to-short transfer.",
        "reasoning",
    ),
)


def _hover(m: Milestone) -> str:
    idea = "<br>".join(textwrap.wrap(m.idea, 60))
    return (
        f"<b>{m.title}</b><br>{m.authors}, {m.when}<br><br>{idea}"
        f"<br><br>Course chapter: {CHAPTERS[m.chapter]}<br><i>click the name to open the paper</i>"
    )


def _label(m: Milestone) -> str:
    """The name, as a link to the paper that opens in a new tab, then the authors."""
    return f'<a href="{m.url}" target="_blank">{m.short}</a>, {m.authors}'


def timeline_figure(milestones: tuple[Milestone, ...] | list[Milestone] = MILESTONES) -> go.Figure:
    """The timeline: one row per work, oldest at the top, coloured by theme.

    Each point sits at the month of the work's first arXiv version. Hover over
    it for the title, authors, date, idea and the chapter of this course that
    runs the idea; click its name to open the paper on arXiv in a new tab.
    Names stand to the right of early points and to the left of late ones, so
    that they stay inside the plot.
    """
    ordered = sorted(milestones, key=lambda m: (m.year, m.month))
    row = {m.key: i for i, m in enumerate(ordered)}
    fig = go.Figure()
    for theme in THEMES:
        works = [m for m in ordered if m.theme == theme]
        if not works:
            continue
        fig.add_trace(
            go.Scatter(
                x=[m.date for m in works],
                y=[row[m.key] for m in works],
                mode="markers+text",
                name=theme,
                marker=dict(size=14, line=dict(width=1, color="white")),
                text=[_label(m) for m in works],
                textposition=["middle right" if m.year < 2021 else "middle left" for m in works],
                textfont=dict(size=13),
                hovertext=[_hover(m) for m in works],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title="Milestones of RLHF (hover for the idea, click a name for the paper)",
        height=150 + 32 * len(ordered),
        margin=dict(l=20, r=20, t=90, b=50),
        hoverlabel=dict(align="left"),
        legend=dict(y=1.0, yanchor="bottom"),
    )
    fig.update_xaxes(title="first arXiv version", type="date", dtick="M12", tickformat="%Y",
                     range=["2016-10-01", "2025-08-01"], showgrid=True)
    fig.update_yaxes(autorange="reversed", showticklabels=False, showgrid=False, zeroline=False)
    return fig
