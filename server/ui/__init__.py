"""`/ui`: a web page over the REST API (Jinja2 shell, plain JavaScript, no build step, nothing from the internet)."""
