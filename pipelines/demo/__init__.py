"""The demo's own inputs: a website to crawl offline (``website``: Python's pydoc server) and
the conversations, preferences and prompts derived from its crawl (``derive``).
"""
