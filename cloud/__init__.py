"""The cloud side: the AI systems a robot fleet leans on. Installs with the `cloud` extra."""
