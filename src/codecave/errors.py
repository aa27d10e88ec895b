"""Package error types.

Every error codecave raises on purpose subclasses :class:`CodecaveError` and a
builtin, so callers can catch either. Messages name the bad value and say what
to do; the CLI prints them without a traceback.
"""

from __future__ import annotations


class CodecaveError(Exception):
    """Base class of all codecave errors."""


class VideoError(CodecaveError, ValueError):
    """A video file cannot be used."""


class InputNotFoundError(VideoError, FileNotFoundError):
    """The input file or folder does not exist."""


class NotSeekableError(VideoError):
    """The input is a pipe or another stream that cannot be read more than once."""


class NotAVideoError(VideoError):
    """The file is not a media file FFmpeg can open."""


class NoVideoStreamError(VideoError):
    """The file opens but holds no video stream."""


class EmptyVideoError(VideoError):
    """The video stream decodes to zero frames."""


class CorruptVideoError(VideoError):
    """The file is truncated or corrupt; some frames could not be decoded."""


class UnsupportedVideoError(VideoError):
    """The video uses a format codecave refuses (named in the message)."""


class EncoderError(CodecaveError, RuntimeError):
    """An encoder is missing or rejected its settings."""


class DatasetError(CodecaveError, ValueError):
    """A dataset folder or its manifest is inconsistent."""


class CheckpointError(CodecaveError, ValueError):
    """A training checkpoint cannot be loaded safely."""


class ConfigError(CodecaveError, ValueError):
    """A configuration value is invalid."""


class OutputExistsError(CodecaveError, FileExistsError):
    """The output file exists (pass ``overwrite``) or is the input itself."""
