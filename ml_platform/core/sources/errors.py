"""The one error type sources raise, so the caller can say which partition failed and why."""


class SourceError(RuntimeError):
    """A source could not provide the data for an interval."""
