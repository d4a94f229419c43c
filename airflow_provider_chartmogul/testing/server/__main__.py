import sys

from airflow_provider_chartmogul.testing.server import main

sys.exit(main())
