"""Facts the advisors read: topology, workload patterns and measurements as plain data (optimizer.advisors)."""
