"""The control plane's state: SQLAlchemy tables, migrations and the content-addressed blob store."""
