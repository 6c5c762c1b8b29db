"""Local targets that need nothing installed: buckets (a folder of objects), queues (SQLite)
and functions (Python handlers in worker processes). The rule actions in ``rules/actions/``
deliver to them; the CLI and user code use them directly."""
