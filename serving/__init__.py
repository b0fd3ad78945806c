"""Ray Serve applications: the OpenAI-compatible endpoint (``openai_app`` + ``openai_protocol``)
and the human rating page (``rating/``).
"""
