"""`from workers.workflows import NonRetryableError`: raised in a step, it
ends the step's retries at once (as on Workers)."""


class NonRetryableError(Exception):
    """A step failure that retrying cannot fix."""


__all__ = ["NonRetryableError"]
