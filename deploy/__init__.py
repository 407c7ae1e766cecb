"""`make deploy STACK=dev` (``python -m deploy --stack dev``): a stack from a clone to a live endpoint.

preflight (deploy/preflight.py) -> bento -> image -> the stack's ECR repository (created by a first
`pulumi up` that launches no instance when it does not exist yet) -> push -> imageTag -> `pulumi up` ->
smoke test (deploy/smoke.py). Every step whose result already exists is skipped, so a re-run after a
failure resumes and later deploys are the same command (deploy/steps.py). Every external program goes
through one runner (deploy/commands.py).
"""
