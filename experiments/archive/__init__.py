"""One-off measurements, indexed in README.md here."""
