"""One version everywhere: header, runtime library, Python package metadata."""
from importlib.metadata import version

import attnkit
from attnkit import _attnkit


def test_runtime_matches_header():
    assert _attnkit.version_number() == _attnkit.header_version_number()


def test_python_version_matches_library():
    assert attnkit.__version__ == version("attnkit")
    number = _attnkit.version_number()
    assert attnkit.__version__ == f"{number // 10000}.{number // 100 % 100}.{number % 100}"
