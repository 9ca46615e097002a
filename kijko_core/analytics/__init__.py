"""Product analytics: the browser's events (intake, buffered bulk writes, retention) and the
organization's summary (docs/analytics.md)."""
