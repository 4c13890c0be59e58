"""The command line and the tools above the stages.

- cli.py: ``rlhf-course`` (and ``python -m rlhf_course``)
- doctor.py: what hardware was found, and which profile it gets
- benchmark.py: timings of the stages and of the labs
- footprint.py: memory and time per stage and profile
- student.py: student versions of the labs, and grading
"""
