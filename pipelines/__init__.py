"""The lifecycle's programs, one folder per phase: ``data/`` → ``pretrain/`` → ``posttrain/`` → ``rl/``,
over the shared Ray Train core ``training/``; ``demo/`` makes the demo's own site and data.
"""
