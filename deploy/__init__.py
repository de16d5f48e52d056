"""Running the Flower Deployment Engine for real: SuperLink, SuperNodes, TLS, node keys, containers."""
