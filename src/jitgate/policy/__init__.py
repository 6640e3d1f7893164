"""Access policy: the YAML file's typed model, its loader (errors with line numbers) and decisions."""
