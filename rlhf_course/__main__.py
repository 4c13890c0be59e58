"""``python -m rlhf_course`` is the same as the ``rlhf-course`` command."""

from rlhf_course.tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
