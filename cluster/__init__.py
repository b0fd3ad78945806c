"""natal's control plane. At the bottom, ``config/`` (the schema, the errors) and the Ray runtime;
on top, the CLI verbs (``commands/``), the lifecycle run, job submission, the report.
"""
