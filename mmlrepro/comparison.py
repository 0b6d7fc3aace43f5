"""Reproduced vs reported, one import for the notebooks, the report and the CLI.

The comparison is split by concept; this module gathers their public names:

- :mod:`mmlrepro.reported`: the paper's numbers (SPEC §9) and display names;
- :mod:`mmlrepro.frames`: the results store as frames (runs, seed means, learning curves, ...);
- :mod:`mmlrepro.evidence`: a claim as a typed object, its parts' tests and evidence levels;
- :mod:`mmlrepro.paper_claims`: the paper's claims per group, :func:`compare`;
- :mod:`mmlrepro.stopping`: the early-stopping rules read off Table 2's histories;
- :mod:`mmlrepro.glance`: what holds, at a glance, per paper artefact.
"""

from __future__ import annotations

from mmlrepro.catalogue import TABLE3_LOSSES
from mmlrepro.evidence import (
    CLAIM_COLUMNS,
    CLAIM_LEVELS,
    Claim,
    Part,
    PartTest,
    Tester,
    cell_level,
    claim,
    claims_display,
    claims_frame,
    family,
)
from mmlrepro.frames import (
    QUICK_LABEL,
    cell_label,
    group_runs,
    learning_curves,
    linear_results,
    mean_interval,
    profile_label,
    reruns_on_another_cpu,
    runs_vs_reported,
)
from mmlrepro.glance import Glance, at_a_glance
from mmlrepro.paper_claims import COMPARISONS, compare, seed_noise
from mmlrepro.reported import LOSS_NAMES, METRICS, MODEL_NAMES, reported, reported_frame
from mmlrepro.stopping import OWN_MONITOR, SPEC_STOPPING_RULE, STOPPING_RULES, stopping_rules

__all__ = [
    "CLAIM_COLUMNS", "CLAIM_LEVELS", "COMPARISONS", "Claim", "Glance", "LOSS_NAMES", "METRICS", "MODEL_NAMES",
    "OWN_MONITOR", "Part", "PartTest", "QUICK_LABEL", "SPEC_STOPPING_RULE", "STOPPING_RULES", "TABLE3_LOSSES",
    "Tester", "at_a_glance", "cell_label", "cell_level", "claim", "claims_display", "claims_frame", "compare",
    "family", "group_runs", "learning_curves", "linear_results", "mean_interval", "profile_label", "reported",
    "reported_frame", "reruns_on_another_cpu", "runs_vs_reported", "seed_noise", "stopping_rules",
]
