"""Who is calling: local API tokens and OIDC bearer tokens. Authentication only; policy decides the rest."""
