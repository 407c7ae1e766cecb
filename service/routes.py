"""The service's HTTP paths, by who may reach them. Pure constants: the API, the API-key check, the
load balancer's path allow-list and the CloudWatch agent's scrape filter (infra/) all read them here.
"""

from __future__ import annotations

CLIENT_ROUTES = ("/classify", "/predict")  # the API: counted in the queue signal, keyed when keys are set
HEALTH_ROUTES = ("/livez", "/readyz", "/healthz")  # load balancer and orchestrator probes: never keyed
METRICS_ROUTE = "/metrics"  # scraped on the instance; never forwarded by the load balancer
# The OpenAPI document and BentoML's docs UI (its page at / loads /static_content/...): forwarded by the
# load balancer only with `access.exposeDocs`.
DOCS_ROUTES = ("/docs.json", "/", "/static_content/*")
