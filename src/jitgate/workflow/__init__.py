"""Workflow services: submit, review, activate, revoke, extend, expire, issue credentials.

Each service runs one transaction (or, around a call to a target, one before and one after) and
writes its audit record inside the same transaction as the change it describes.
"""
