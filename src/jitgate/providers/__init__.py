"""Credential providers: one small interface, built-ins for SSH, PostgreSQL and MariaDB, entry points."""
