"""The gate's updater (issue 17): signed releases installed beside the running one, switched, and
switched back when the new agent does not come up healthy."""
