"""What duty officers look at: the duty board page, served by the API (alerts/api.py)."""
