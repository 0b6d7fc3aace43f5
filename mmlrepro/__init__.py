"""mmlrepro: a reproduction of the Multi-Margin (Cosine) Loss paper (Ozsoy 2024) and the
Li, Jin, Ren 2023 loss study, with fast exact full-ranking evaluation.

The technical reference is SPEC.md (kept beside the project as ``shared/SPEC.md``); every module
cites the section it implements.
"""

__version__ = "0.1.0"
