"""Sources and contracts: mappings, canonical tables, ingest, incoming batches."""
