"""The bus commands of `tether` (filled in below); registered on import."""
