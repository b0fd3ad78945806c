"""Quality filters, pure functions on one text returning a :class:`.result.FilterResult`: ``url``,
``lang``, ``gopher``, ``c4``, ``fineweb``, ``code``, ``pii`` (redacts); ``chain`` runs them in order.
"""
