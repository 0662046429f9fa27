"""``ck run script:ckvision-submission @s.json``: ``ckvision submission`` as a CK workflow.

See ckvision.submission.ck_script for the options; all logic is in ckvision.submission.
"""

from ckvision.submission.ck_script import run  # noqa: F401
