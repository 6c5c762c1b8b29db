"""thingcore: a self-hosted IoT device backend compatible with AWS IoT Core devices."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("thingcore")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
