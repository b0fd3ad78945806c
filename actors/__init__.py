"""Long-lived Ray actors of the RLHF loop."""
