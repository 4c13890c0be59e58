"""What the book and the labs use to teach, beside the stages.

- checking.py: the exercise-checking machinery every chapter's checks.py uses
- plots.py: the course's plotly theme and renderer
- history.py: the timeline of RLHF milestones
"""
