"""mmlrepro: a reproduction of the Multi-Margin (Cosine) Loss paper (Ozsoy 2024) and the
Li, Jin, Ren 2023 loss study, with fast exact full-ranking evaluation.

The technical reference is ``docs/reference.md``, which the code calls SPEC: "SPEC §N" is its
section §N, and every module cites the section it implements.
"""

__version__ = "0.1.0"
