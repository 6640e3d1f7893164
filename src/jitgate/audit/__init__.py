"""The tamper-evident audit log: canonical event bodies, the hash chain, its signed head, verify, export.

Every record is written inside the transaction of the change it describes (``chain.AuditLog``),
commits to the previous record's hash, and the newest hash is signed by a key kept outside the
database (``keys``), so that editing, deleting, reordering or truncating records is detected by
``verify.verify``. ``query`` reads the log back for people and for export.
"""
