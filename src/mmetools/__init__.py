"""mmetools."""
