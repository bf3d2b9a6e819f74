"""The GBNN benchmark: ``compress.boost``'s gradient-boosted head against the same-width head trained
with Adam on the same frozen features. ``python -m bench boost``; rows in :mod:`bench.boost.rows`."""
