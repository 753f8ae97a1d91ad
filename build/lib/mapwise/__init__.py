"""mapwise: declarative marketing-data mapping and deep personalisation pipelines."""
