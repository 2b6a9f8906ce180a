"""The one exception type users see for bad configuration: tools print its message alone, without a traceback."""


class NASError(ValueError):
    """A bad value in a YAML, arch, file or argument; the message names the value and what is allowed."""
