"""What duty officers look at: the duty board page (and Grafana provisioning)."""
