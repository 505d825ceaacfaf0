"""The application: the `rag` CLI, the session runner and supervisor, status, search, the
search page, evaluation, the metrics exporter, the warm embedding server and the Dagster
instance helpers. The only package that starts processes; it may import every other one."""
