"""The human rating page: Ray Serve app, SQLite store, static page."""
