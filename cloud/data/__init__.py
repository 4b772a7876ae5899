"""Loaders of the offline corpora several systems share; one module per corpus, nothing downloads.

Import the loader module you need (`tether.cloud.data.gutenberg`, `.sharegpt`, `.qa`).
"""
