"""The one Ray Serve application: a FastAPI ingress in front of the capability deployments."""
