"""The media tests' session-scoped real OCR engine, for the photo flow here."""

from tests.media.conftest import rapid  # noqa: F401
