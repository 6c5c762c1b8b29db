"""Function triggers beyond rules: schedules, queue batches and bucket writes (event sources)."""
