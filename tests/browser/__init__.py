"""End-to-end test of the ChartMogul connection form in Airflow's UI (headless Chromium)."""
