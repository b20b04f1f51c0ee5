"""Insights for artists and designers: which imagery wins for whom, clickbait, what to add to a pool.

``keyart insights`` (``cli``) runs ``report.compute_insights`` on keyart logs and a shared linear model
and ``report.write_insights`` writes the HTML report, the CSV tables and the JSON. One module per concept:
``data`` (logs and model in), ``segments`` (member segments), ``shares`` (impression shares, take
fractions, IPS estimates, who sees what, over time), ``model`` (the posterior read for real and designed
artworks), ``effects`` (attribute effects per segment), ``clickbait``, ``suggestions`` (what to add, what
is redundant), ``figures`` and ``report``. docs/insights.md explains each section and its caveats.
"""
