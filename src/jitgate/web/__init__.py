"""Server-rendered pages for people: pending reviews, my requests and grants, the audit trail."""
