"""Kafka mode: per-partition projection stores written by workers, read via exports.

Layout on shared storage (see deploy/README.md):

    <data>/partitions/p<N>/projections/   DuckDBProjectionStore of log partition N
                                          (a rebuilt one: projections-<id>/, named by
                                          p<N>/store-folder)
    <data>/partitions/p<N>/export/<seq>/  Parquet of every relation, as of an offset
    <data>/partitions/p<N>/manifest.json  the latest export: offsets, files, segments

Events are keyed by iteration (or model) and folds never read another aggregate, so
partitions are independent: whichever worker owns partition N owns its store.
"""
