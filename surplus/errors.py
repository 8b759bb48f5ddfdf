"""The error a user sees as one line: raised anywhere, printed by the CLI without a stack trace."""


class UserError(Exception):
    """A problem the user can fix (bad input, a service that does not answer): one line, exit 2."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class WorkerStop(UserError):
    """A running worker must stop without committing (e.g. too many dead letters): one line, exit 3."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=3)
