"""The REST API under ``/api/v1``: create_app(runtime) with no import-time side effects."""
