"""Source mappings: the mapping file, its expression language, reading raw files and applying mappings."""
