"""The Postgres store: migrations, the non-blocking sink (exporters + writer + spool), and the query tools."""
