"""What a reviewer reads: the comparison table and the static figures."""
