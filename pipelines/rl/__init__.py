"""Phase 4, RL: the RLHF loop driver (``rlhf``) over the actors in ``actors/``, verifiable reward
rules (``verifiers``), prompt sets, and the held-out evaluation (``evaluate``).
"""
