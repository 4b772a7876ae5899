"""DSLA-Serve: dual-state linear attention, chained distillation, online layer conversion (arXiv 2506.09316)."""
