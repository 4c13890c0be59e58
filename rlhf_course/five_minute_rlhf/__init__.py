"""The code of the Five-Minute RLHF chapter (``labs/five_minute_rlhf.ipynb``): its exercise check, in checks.py.
"""
