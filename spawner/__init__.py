"""Everything that turns a workload request into a running workload."""
