"""Human review: the queue (bucket rules, the materialised queue, leases), review decisions and
what they add up to (statistics, history, item details), blind review and heatmaps."""
