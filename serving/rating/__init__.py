"""The human rating page: its Ray Serve app, the SQLite ratings database, the static page.
Ratings export as preference data for ``natal reward``.
"""
