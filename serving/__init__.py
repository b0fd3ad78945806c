"""Ray Serve applications: the OpenAI-compatible endpoint and the rater page."""
