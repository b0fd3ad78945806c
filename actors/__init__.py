"""The long-lived Ray actors the RL loop drives: vLLM rollout, reward scorer, learners, weight
sync; advantage estimators and policy losses (``algorithms``) as pure functions.
"""
