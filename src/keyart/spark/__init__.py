"""keyart on Apache Spark: the reward join, training and evaluation over partitioned logs, from
per-partition sums (extra ``keyart[spark]``, pyspark >= 3.5).

The same results as the single-machine path (``keyart.rewards``, ``keyart.train``, ``keyart.evaluation``)
on the same events, computed where the data is: DataFrame operations for the join, keyart's own featurizer
and statistics functions over Arrow batches on the executors, tree aggregation of model-sized sums to the
driver. Nothing in the core imports this package (or pyspark). Modules: ``io`` (session, Parquet layout),
``join``, ``train``, ``evaluate``, ``cli`` (``keyart spark ...``).
"""
