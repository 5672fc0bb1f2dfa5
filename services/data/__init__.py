"""The data service: datasets, models, versions, uploads, files and storage accounting."""
