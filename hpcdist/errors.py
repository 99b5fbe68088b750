"""Exceptions raised by hpcdist; every one derives from HpcdistError."""


class HpcdistError(Exception):
    """Base class of all hpcdist errors."""


class CollectiveError(HpcdistError):
    """An error every rank raises at the same point (bad configuration, say).

    The abort hook gives every rank a moment to print it before the job is
    brought down, so each rank's log names the problem.
    """


class ClusterSpecError(CollectiveError, ValueError):
    """The roles asked for do not fit the ranks that were launched."""


class DevicePlacementError(HpcdistError, RuntimeError):
    """Strict placement asked for a device this rank cannot have."""


class ExchangeError(HpcdistError, RuntimeError):
    """Ranks disagree about a collective (other shapes, dtypes, order, count)."""


class CollectiveTimeoutError(HpcdistError, TimeoutError):
    """A blocking collective passed its deadline; names the ranks that never arrived."""


class ExchangeTimeoutError(ExchangeError, CollectiveTimeoutError):
    """A gradient exchange passed its deadline; names the ranks missing."""


class NonFiniteGradientError(HpcdistError, FloatingPointError):
    """A reduced gradient holds NaN or inf."""


class ConfigMismatchError(CollectiveError, ValueError):
    """The ranks of one trainer were given different settings, data or models."""


class CheckpointError(HpcdistError, OSError):
    """A checkpoint is corrupt, truncated or belongs to another model or world."""


class DataError(HpcdistError, ValueError):
    """A data file or record is malformed; the message names file and record."""


# Queue errors, with TensorFlow 1's names and meaning.


class OutOfRangeError(HpcdistError):
    """The queue is closed and holds too few elements for the request."""


class CancelledError(HpcdistError):
    """An enqueue on a closed queue, or a pending one cancelled by close()."""


class DeadlineExceededError(HpcdistError, TimeoutError):
    """A blocking queue operation passed its timeout."""
