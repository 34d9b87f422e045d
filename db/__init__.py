"""The data layer: tables, engine and sessions, the rules, reads and writes. No GraphQL here."""
