"""dify-stats: exact statistics of Dify workflow runs kept in an append-only log store."""

from importlib import metadata

try:
    __version__ = metadata.version("dify-stats")
except metadata.PackageNotFoundError:  # a source tree run without installing it
    __version__ = "0+unknown"
