from . import helpers  # noqa: F401  (fails the session early, with a clear message, if ../shared is absent)
