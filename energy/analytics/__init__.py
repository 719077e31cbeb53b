"""Analytics of the energy app: KPIs, heatmap matrix, CSV export, naive forecasts, live trails,
rollups and retention. See docs/analytics.md for the definitions.

Modules: `params` (subject, range, interval and zone parsing), `rollups` (the aggregate tables'
upkeep), `kpi`, `matrix`, `export`, `forecast`, `live`, `retention`, `tasks`.
"""
